// Entry point: one page, two views. /consent/<code> (and /consent after the code
// was moved out of the address bar) is the consent page; everything else under
// /app is the inbox.
import { path, route } from "./base.js";
import { consentPage } from "./consent.js";
import { h, notice, render } from "./dom.js";
import { inboxPage } from "./inbox.js";

async function start() {
  const r = route();
  if (r === "consent" || r.startsWith("consent/")) await consentPage();
  else await inboxPage();
}

start().catch((e) => {
  render(h("h1", {}, "Something went wrong"), notice("error", (e as Error)?.message ?? String(e)), h("p", {}, h("a", { href: path("app") }, "Reload the inbox")));
});
