// A journey version as a picture: the graph the admin API gives
// (`/api/journeys/{id}/canvas`) laid out by dagre, drawn as SVG with
// lit-html. Each node's shape says what it is; its counts are written on
// it and kept in data attributes, so that a test (or a screen reader, via
// the label) reads the same numbers a person sees.

import dagre from "@dagrejs/dagre";
import { svg } from "lit-html";
import { count, percent } from "./format.js";

const WIDTH = 232;
const HEIGHT = { send: 104, trigger: 72, end: 72, exit: 72, hand_off: 72, goal: 76 };
const DEFAULT_HEIGHT = 84;

/** The layout of a canvas, kept while its shape does not change. */
const layouts = new Map();

function shapeKey(canvas) {
  return JSON.stringify([
    canvas.nodes.map((n) => [n.id, n.kind]),
    canvas.edges.map((e) => [e.from, e.to, e.label || ""]),
  ]);
}

/** Where each node and way goes: dagre's layered layout, top to bottom. */
export function layout(canvas) {
  const key = shapeKey(canvas);
  const known = layouts.get(key);
  if (known) return known;
  const graph = new dagre.graphlib.Graph({ multigraph: true });
  graph.setGraph({ rankdir: "TB", nodesep: 28, ranksep: 46, edgesep: 12, marginx: 12, marginy: 12 });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const node of canvas.nodes) {
    graph.setNode(node.id, { width: WIDTH, height: HEIGHT[node.kind] || DEFAULT_HEIGHT });
  }
  canvas.edges.forEach((edge, index) => {
    const label = edgeLabel(edge);
    graph.setEdge(
      edge.from,
      edge.to,
      label ? { width: Math.min(8 * label.length + 12, 200), height: 18, labelpos: "c" } : {},
      `way-${index}`,
    );
  });
  dagre.layout(graph);
  const placed = {
    width: Math.ceil(graph.graph().width || WIDTH),
    height: Math.ceil(graph.graph().height || DEFAULT_HEIGHT),
    nodes: new Map(canvas.nodes.map((n) => [n.id, graph.node(n.id)])),
    edges: canvas.edges.map((e, index) => graph.edge({ v: e.from, w: e.to, name: `way-${index}` })),
  };
  if (layouts.size > 32) layouts.clear();
  layouts.set(key, placed);
  return placed;
}

function edgeLabel(edge) {
  const parts = [];
  if (edge.label) parts.push(edge.label.length > 24 ? `${edge.label.slice(0, 23)}…` : edge.label);
  if (edge.count !== undefined && edge.count !== null) parts.push(count(edge.count));
  return parts.join(" · ");
}

/** The outline of a node of `kind`, `w` by `h`. */
function outline(kind, w, h) {
  switch (kind) {
    case "trigger":
      return svg`<rect class="shape" width=${w} height=${h} rx=${h / 2}></rect>`;
    case "branch":
      return svg`<polygon class="shape" points=${`16,0 ${w - 16},0 ${w},${h / 2} ${w - 16},${h} 16,${h} 0,${h / 2}`}></polygon>`;
    case "split":
      return svg`<polygon class="shape" points=${`0,0 ${w},0 ${w - 18},${h} 18,${h}`}></polygon>`;
    case "goal":
      return svg`<ellipse class="shape" cx=${w / 2} cy=${h / 2} rx=${w / 2} ry=${h / 2}></ellipse>`;
    case "hand_off":
      return svg`<polygon class="shape" points=${`0,0 ${w - 20},0 ${w},${h / 2} ${w - 20},${h} 0,${h}`}></polygon>`;
    case "wait":
    case "wait_for":
      return svg`<rect class="shape" width=${w} height=${h} rx="14"></rect>`;
    case "end":
    case "exit":
      return svg`<rect class="shape" width=${w} height=${h} rx="4"></rect><rect class="inner" x="4" y="4" width=${w - 8} height=${h - 8} rx="2"></rect>`;
    default:
      return svg`<rect class="shape" width=${w} height=${h} rx="4"></rect>`;
  }
}

/** Nodes that are passed through at once: only who reached them counts. */
const ONLY_REACHED = ["trigger", "end", "exit", "hand_off", "goal"];

const KIND_NAME = {
  trigger: "Trigger",
  send: "Message",
  run: "Step",
  wait: "Wait",
  wait_for: "Wait for an event",
  branch: "Branch",
  split: "Split",
  goal: "Goal",
  hand_off: "Hand-off",
  exit: "Exit",
  end: "End",
};

/** What a node says in words: its accessible name, and the details panel. */
export function describe(node) {
  const c = node.counts;
  const words = [
    `${KIND_NAME[node.kind] || node.kind} ${node.label}`,
    node.detail,
    `${count(c.entered)} entered`,
  ];
  if (!ONLY_REACHED.includes(node.kind)) {
    words.push(`${count(c.waiting)} waiting`, `${count(c.passed)} passed`, `${count(c.dropped)} dropped`);
  }
  if (node.message) {
    const m = node.message;
    words.push(
      `${count(m.sent)} sent`,
      `${percent(m.open_rate)} opened`,
      `${percent(m.click_rate)} clicked`,
      `${percent(m.conversion_rate)} converted`,
    );
  }
  return words.filter(Boolean).join(", ");
}

function countsLine(node) {
  const c = node.counts;
  if (ONLY_REACHED.includes(node.kind)) {
    return `${count(c.entered)} ${node.kind === "trigger" ? "entered" : "reached"}`;
  }
  return `${count(c.entered)} in · ${count(c.waiting)} wait · ${count(c.passed)} on · ${count(c.dropped)} out`;
}

function messageLine(node) {
  const m = node.message;
  return `${count(m.sent)} sent · ${percent(m.open_rate)} open · ${percent(m.click_rate)} click · ${percent(m.conversion_rate)} conv`;
}

/** A line cut to what fits on a node; the whole of it is in the label. */
function fit(text, room = 30) {
  return text && text.length > room ? `${text.slice(0, room - 1)}…` : text;
}

function path(points) {
  return points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
}

/**
 * The SVG of one version. `onPick(node)` runs when a node is clicked or
 * chosen with Enter or Space.
 */
export function drawCanvas(canvas, onPick) {
  const placed = layout(canvas);
  const pick = (node) => (event) => {
    if (event.type === "keydown" && event.key !== "Enter" && event.key !== " ") return;
    event.preventDefault();
    onPick(node);
  };
  return svg`<svg class="canvas" viewBox=${`0 0 ${placed.width} ${placed.height}`}
      width=${placed.width} height=${placed.height} role="group"
      aria-label=${`Version ${canvas.version}: ${canvas.nodes.length} nodes`}>
    <defs><marker id=${`arrow-${canvas.version}`} viewBox="0 0 10 10" refX="9" refY="5"
      markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"></path></marker></defs>
    ${canvas.edges.map((edge, i) => {
      const at = placed.edges[i];
      if (!at) return null;
      const label = edgeLabel(edge);
      return svg`<g class="way" data-from=${edge.from} data-to=${edge.to}>
        <path d=${path(at.points)} marker-end=${`url(#arrow-${canvas.version})`}></path>
        ${label ? svg`<text class="way-label" x=${at.x} y=${at.y + 4} text-anchor="middle">${label}</text>` : null}
      </g>`;
    })}
    ${canvas.nodes.map((node) => {
      const at = placed.nodes.get(node.id);
      const w = at.width;
      const h = at.height;
      const c = node.counts;
      return svg`<g class=${`node kind-${node.kind}`} transform=${`translate(${at.x - w / 2},${at.y - h / 2})`}
          tabindex="0" role="button" aria-label=${describe(node)}
          data-node=${node.id} data-kind=${node.kind} data-entered=${c.entered}
          data-waiting=${c.waiting} data-passed=${c.passed} data-dropped=${c.dropped}
          data-sent=${node.message ? node.message.sent : ""}
          @click=${pick(node)} @keydown=${pick(node)}>
        ${outline(node.kind, w, h)}
        <title>${describe(node)}</title>
        <text class="label" x=${w / 2} y="22" text-anchor="middle">${fit(node.label, 28)}</text>
        <text class="detail" x=${w / 2} y="40" text-anchor="middle">${fit(node.detail, 34)}</text>
        <text class="counts" x=${w / 2} y=${h - (node.message ? 36 : 13)} text-anchor="middle">${countsLine(node)}</text>
        ${node.message ? svg`<text class="rates" x=${w / 2} y=${h - 14} text-anchor="middle">${messageLine(node)}</text>` : null}
      </g>`;
    })}
  </svg>`;
}
