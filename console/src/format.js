// Numbers and times as people read them, in the viewer's own locale and
// time zone (the browser's).

const compactFormat = new Intl.NumberFormat(undefined, {
  notation: "compact",
  maximumFractionDigits: 1,
});
const wholeFormat = new Intl.NumberFormat(undefined);
const percentFormat = new Intl.NumberFormat(undefined, {
  style: "percent",
  maximumFractionDigits: 1,
});
const timeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "short",
});
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;

/** 12.3K for 12,345; counts under 10,000 as they are. */
export function count(n) {
  if (n === null || n === undefined) return "–";
  return Math.abs(n) < 10000 ? wholeFormat.format(n) : compactFormat.format(n);
}

/** 4.5% for 0.045; a dash when there is nothing to divide by. */
export function percent(rate) {
  return rate === null || rate === undefined ? "–" : percentFormat.format(rate);
}

/** A moment (ms since the epoch) in the viewer's zone. */
export function when(ms) {
  return ms ? timeFormat.format(new Date(ms)) : "–";
}

/** The viewer's time zone, said once on the page. */
export function viewerZone() {
  return zone;
}
