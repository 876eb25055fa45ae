// Builds the user's web app (web/src) into web/dist with esbuild: one ES module
// bundle (jose's browser build included) and one stylesheet, content-hashed so
// they can be cached forever, plus index.html pointing at them. Every asset is
// local: the app loads nothing from another origin. `npm run build:web`.
import { copyFile, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = path.dirname(fileURLToPath(import.meta.url));
const src = path.join(root, "src");
const dist = path.join(root, "dist");
const assets = path.join(dist, "assets");

export async function buildWeb({ quiet = false } = {}) {
  const started = Date.now();
  // Build into a fresh folder, then swap, so a running server never sees half a build.
  const tmp = `${dist}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  const result = await esbuild.build({
    entryPoints: { app: path.join(src, "main.ts"), styles: path.join(src, "styles.css") },
    outdir: path.join(tmp, "assets"),
    entryNames: "[name]-[hash]",
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["es2022", "chrome109", "firefox115", "safari16"],
    minify: true,
    sourcemap: "linked",
    metafile: true,
    legalComments: "linked",
    logLevel: quiet ? "error" : "warning",
  });
  const outputs = Object.entries(result.metafile.outputs);
  const find = (entry) => {
    const hit = outputs.find(([, o]) => o.entryPoint && path.resolve(o.entryPoint) === path.join(src, entry));
    if (!hit) throw new Error(`esbuild produced no output for ${entry}`);
    return "/app/assets/" + path.basename(hit[0]);
  };
  const html = (await readFile(path.join(src, "index.html"), "utf8"))
    .replace("%SCRIPT%", find("main.ts"))
    .replace("%STYLES%", find("styles.css"));
  if (html.includes("%")) throw new Error("index.html still has an unreplaced %PLACEHOLDER%");
  await writeFile(path.join(tmp, "index.html"), html);
  await copyFile(path.join(src, "icon.svg"), path.join(tmp, "assets", "icon.svg"));
  await rm(dist, { recursive: true, force: true });
  await mkdir(path.dirname(dist), { recursive: true });
  await rename(tmp, dist);
  const bytes = outputs.filter(([f]) => !f.endsWith(".map")).reduce((n, [, o]) => n + o.bytes, 0);
  if (!quiet) process.stdout.write(`web app built into ${path.relative(process.cwd(), dist) || dist} (${Math.round(bytes / 1024)} KiB, ${Date.now() - started} ms)\n`);
  return { dist, assets };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  buildWeb().catch((e) => {
    process.stderr.write(`build:web failed: ${e.message}\n`);
    process.exit(1);
  });
}
