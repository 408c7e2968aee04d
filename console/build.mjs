// Builds the console into dist/: one script (our code with lit-html and
// dagre bundled in, minified), one stylesheet and the page. The dripline
// binary embeds dist/ (runtime/admin/src/console.rs).
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

await rm("dist", { recursive: true, force: true });
await mkdir("dist", { recursive: true });
await build({
  entryPoints: { app: "src/main.js" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  outdir: "dist",
  legalComments: "linked",
  logLevel: "warning",
});
await build({
  entryPoints: { app: "src/style.css" },
  bundle: true,
  minify: true,
  outdir: "dist",
  logLevel: "warning",
});
await copyFile("index.html", "dist/index.html");
