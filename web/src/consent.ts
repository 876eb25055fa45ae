// The consent page: /consent/<code>. Shows who asks and for what, then accepts
// (key pair made here, public key registered, private key kept on this device,
// backup offered) or declines. The code is moved out of the address bar at once
// (kept in this tab's sessionStorage only until answered), so it stays out of
// the history, bookmarks and anything shared from the address bar.
//
// The key pair is saved (as a PendingKey) before acceptPostbox is sent and reused on every
// retry: if the server took the key but its answer was lost, a retry is refused as "already
// used", and proving the saved key (userKeyChallenge) then gets the credential instead.
import { ApiError, NetworkError, gql } from "./api.js";
import { SERVER, path, route } from "./base.js";
import { KeyMismatch, proveKey, type IssuedTokens } from "./credential.js";
import { downloadBlob, formatDate, h, notice, relative, render } from "./dom.js";
import { BACKUP_FORMAT, BACKUP_WARNING, backupFileName, generateUserKey, type KeyBackup, type PrivateJwk, type PublicJwk } from "./keys.js";
import { deletePendingKey, getPendingKey, getPostbox, savePostbox, saveUnlessConfirmed, updatePostbox } from "./store.js";

const CODE_KEY = "postbox.consentCode";

/** The key pair offered for a postbox. `backupJwk` only while this page still holds the exported copy it made. */
interface OfferedKey {
  privateKey: CryptoKey;
  publicJwk: PublicJwk;
  backupJwk?: PrivateJwk;
}

/** Keys made on this page, by postboxId: a retry offers the same one (and the backup stays possible). */
const madeHere = new Map<string, OfferedKey>();

/** This page's key for the postbox, else one saved by an earlier page that never learnt the outcome. */
async function offeredKey(postboxId: string): Promise<OfferedKey | undefined> {
  return madeHere.get(postboxId) ?? (await getPendingKey(postboxId).catch(() => undefined));
}

function dropKey(postboxId: string) {
  madeHere.delete(postboxId);
  void deletePendingKey(postboxId).catch(() => {});
}

interface ConsentRequest {
  postboxId: string;
  applicationName: string;
  contractId: string;
  contractKind: string;
  postboxMode: "ONE_OFF" | "ONGOING";
  reference: string | null;
  status: "PENDING" | "READY" | "DECLINED" | "EXPIRED" | "CLOSED";
  canRespond: boolean;
  consentExpiresAt: string;
  expiresAt: string;
  hasCallback: boolean;
}

interface AcceptResult {
  postboxId: string;
  status: string;
  publicKeyThumbprint: string;
  redirectUrl: string | null;
  credential: { accessToken: string; accessTokenExpiresAt: string; refreshToken: string; refreshTokenExpiresAt: string };
}

const CONSENT_REQUEST = /* GraphQL */ `
  query Consent($code: String!) {
    consentRequest(code: $code) {
      postboxId applicationName contractId contractKind postboxMode reference status canRespond consentExpiresAt expiresAt hasCallback
    }
  }
`;

const ACCEPT = /* GraphQL */ `
  mutation Accept($input: AcceptPostboxInput!) {
    acceptPostbox(input: $input) {
      postboxId status publicKeyThumbprint redirectUrl
      credential { accessToken accessTokenExpiresAt refreshToken refreshTokenExpiresAt }
    }
  }
`;

const DECLINE = /* GraphQL */ `
  mutation Decline($input: DeclinePostboxInput!) {
    declinePostbox(input: $input) { postboxId status redirectUrl }
  }
`;

/** Takes the code from /consent/<code> into sessionStorage and removes it from the address bar. */
function takeCode(): string | null {
  const m = /^consent\/([^/?#]+)\/?$/.exec(route());
  if (m) {
    const code = decodeURIComponent(m[1]);
    try {
      sessionStorage.setItem(CODE_KEY, code);
    } catch {
      // Storage refused (privacy settings): the code still works for this page view.
    }
    history.replaceState(null, "", path("consent"));
    return code;
  }
  try {
    return sessionStorage.getItem(CODE_KEY);
  } catch {
    return null;
  }
}

function forgetCode() {
  try {
    sessionStorage.removeItem(CODE_KEY);
  } catch {
    /* nothing stored */
  }
}

export async function consentPage(): Promise<void> {
  const code = takeCode();
  if (!code) {
    render(
      h("h1", {}, "No consent link"),
      notice("info", "This page opens from a consent link an application gave you (it looks like …/consent/ followed by a code). Open that link again; for your safety the code is not kept once the page has been left or answered."),
      h("p", {}, h("a", { href: path("app") }, "Go to your inbox")),
    );
    return;
  }
  await load(code);
}

async function load(code: string): Promise<void> {
  render(h("h1", {}, "Checking your consent link…"), h("p", { class: "loading", role: "status" }, "Asking the Postbox server what this link is for."));
  let req: ConsentRequest;
  try {
    req = (await gql<{ consentRequest: ConsentRequest }>(CONSENT_REQUEST, { code })).consentRequest;
  } catch (e) {
    showLoadError(e, code);
    return;
  }
  if (req.status !== "PENDING" || !req.canRespond) {
    await showFinalState(req);
    return;
  }
  showRequest(code, req);
}

function showLoadError(e: unknown, code: string) {
  if (e instanceof NetworkError) {
    render(
      h("h1", {}, "Cannot reach Postbox"),
      notice("error", e.message),
      h("div", { class: "actions" }, h("button", { type: "button", class: "primary", onclick: () => void load(code) }, "Try again")),
    );
    return;
  }
  const err = e as ApiError;
  if (err.code === "NOT_FOUND") {
    forgetCode();
    render(
      h("h1", {}, "This link is not valid"),
      notice("error", "The consent code in this link is unknown. Check that the whole link was copied, or ask the application for a new one. A link also stops working once it has been answered."),
      h("p", {}, h("a", { href: path("app") }, "Go to your inbox")),
    );
    return;
  }
  if (err.code === "RATE_LIMITED") {
    render(h("h1", {}, "Too many attempts"), notice("error", err.message), h("div", { class: "actions" }, h("button", { type: "button", onclick: () => void load(code) }, "Try again")));
    return;
  }
  render(h("h1", {}, "Something went wrong"), notice("error", err.message), h("div", { class: "actions" }, h("button", { type: "button", onclick: () => void load(code) }, "Try again")));
}

async function showFinalState(req: ConsentRequest) {
  const app = req.applicationName;
  const held = await getPostbox(req.postboxId).catch(() => undefined);
  if (req.status === "READY" && !held) {
    // Perhaps accepted with this device's key by an attempt whose answer was lost.
    const key = await offeredKey(req.postboxId);
    if (key) return recoverAccepted(req, key);
  }
  forgetCode();
  // A postbox that will never be READY: a key saved for it is of no use (expired: below).
  if (req.status === "DECLINED" || req.status === "CLOSED") dropKey(req.postboxId);
  const inbox = h("p", {}, h("a", { href: path("app"), class: "button primary" }, "Go to your inbox"));
  const expired = req.status === "EXPIRED" || (req.status === "PENDING" && Date.parse(req.consentExpiresAt) <= Date.now());
  if (expired) {
    dropKey(req.postboxId);
    render(h("h1", {}, "This link has expired"), notice("warning", `The consent link from ${app} expired ${relative(req.consentExpiresAt)} (${formatDate(req.consentExpiresAt)}). Ask ${app} for a new one.`), inbox);
  } else if (req.status === "READY") {
    render(
      h("h1", {}, "This link was already used"),
      held
        ? notice("success", `You accepted this postbox from ${app} on this device. Your files arrive in your inbox.`)
        : notice("warning", `This postbox from ${app} was already accepted, on another device or browser. Its files can be read only where it was accepted (or where its key backup was restored).`),
      inbox,
    );
  } else if (req.status === "DECLINED") {
    render(h("h1", {}, "You declined this postbox"), notice("info", `This link from ${app} was declined. If that was a mistake, ask ${app} for a new link.`), inbox);
  } else if (req.status === "CLOSED") {
    render(h("h1", {}, "This postbox is closed"), notice("info", `The postbox from ${app} has been closed; nothing more arrives through it.`), inbox);
  } else {
    render(h("h1", {}, "This link cannot be answered"), notice("error", `${app} cannot take part right now (it is disabled on this Postbox server). Try again later or contact ${app}.`), inbox);
  }
}

function showRequest(code: string, req: ConsentRequest) {
  const app = req.applicationName;
  const status = h("div", { "aria-live": "polite" });
  const accept = h("button", { type: "button", class: "primary", id: "accept" }, "Accept");
  const decline = h("button", { type: "button", class: "danger", id: "decline" }, "Decline");
  const busy = (on: boolean) => {
    accept.disabled = on;
    decline.disabled = on;
  };
  accept.addEventListener("click", () => void onAccept(code, req, status, busy));
  decline.addEventListener("click", () => void onDecline(code, req, status, busy));

  render(
    h("h1", {}, `${app} wants to send you files`),
    h(
      "section",
      { class: "card", "aria-labelledby": "what" },
      h("h2", { id: "what" }, "What you are asked"),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Application"),
        h("dd", { id: "app-name" }, app),
        h("dt", {}, "Contract"),
        h("dd", {}, h("code", {}, req.contractId)),
        h("dt", {}, "What it sends"),
        h("dd", { id: "mode" }, req.postboxMode === "ONGOING" ? "Ongoing: files whenever it has something new for you, until the postbox expires." : "One-off: files for this one occasion."),
        req.reference ? [h("dt", {}, "Your account"), h("dd", {}, req.reference)] : null,
        h("dt", {}, "Postbox expires"),
        h("dd", { id: "postbox-expires" }, `${formatDate(req.expiresAt)} (${relative(req.expiresAt)})`),
        h("dt", {}, "Answer by"),
        h("dd", { id: "consent-expires" }, `${formatDate(req.consentExpiresAt)} (${relative(req.consentExpiresAt)})`),
        h("dt", {}, "Afterwards"),
        h("dd", {}, req.hasCallback ? `You return to ${app}.` : "Your inbox opens."),
      ),
      h(
        "p",
        { class: "small muted" },
        "Accepting creates a key pair in this browser. Files are encrypted to it, so only this device can read them: not the Postbox server, and not anyone who intercepts them. The private key stays on this device; you can download a backup of it next.",
      ),
      h("p", { class: "small muted" }, `${app} may also ask you for data later; you decide each time.`),
      h("div", { class: "actions" }, accept, decline),
    ),
    status,
  );
}

async function onAccept(code: string, req: ConsentRequest, status: HTMLElement, busy: (on: boolean) => void) {
  busy(true);
  let key = await offeredKey(req.postboxId);
  if (!key) {
    status.replaceChildren(h("p", { class: "loading", role: "status" }, "Creating your key on this device…"));
    try {
      key = await generateUserKey();
    } catch (e) {
      busy(false);
      status.replaceChildren(notice("error", `This browser could not create a key: ${(e as Error).message}`));
      return;
    }
    madeHere.set(req.postboxId, key);
    // Before the server hears of it: if the server takes the key and the answer is lost, this copy recovers the postbox.
    // Refused storage (private browsing) still leaves this page's copy for a retry.
    const { privateKey, publicJwk } = key;
    await saveUnlessConfirmed({ postboxId: req.postboxId, pending: true, privateKey, publicJwk, applicationName: req.applicationName, consentExpiresAt: req.consentExpiresAt, savedAt: new Date().toISOString() }).catch(() => false);
  }
  let result: AcceptResult;
  try {
    status.replaceChildren(h("p", { class: "loading", role: "status" }, "Registering your public key…"));
    result = (await gql<{ acceptPostbox: AcceptResult }>(ACCEPT, { input: { code, publicKey: key.publicJwk } })).acceptPostbox;
  } catch (e) {
    if (e instanceof ApiError && e.code === "CONFLICT") {
      // Already used: possibly by an earlier try of this key whose answer was lost. Ask what the postbox is now.
      await load(code);
      return;
    }
    busy(false);
    if (e instanceof ApiError && e.code !== "INTERNAL_SERVER_ERROR" && e.code !== "RATE_LIMITED") {
      // The link can no longer be used (expired, unknown, key refused): show that state.
      forgetCode();
      dropKey(req.postboxId);
      status.replaceChildren(notice("error", e.message), h("p", {}, h("a", { href: path("app") }, "Go to your inbox")));
      return;
    }
    status.replaceChildren(
      notice(
        "error",
        e instanceof NetworkError
          ? `${e.message} Your answer may or may not have reached the server. Press Accept again: this device offers the same key, so a second try completes the same acceptance.`
          : (e as Error).message,
      ),
    );
    return;
  }
  forgetCode();
  if (result.publicKeyThumbprint !== key.publicJwk.kid) {
    status.replaceChildren(notice("error", "The server registered a different key than this device made. Do not use this postbox; contact the application."));
    return;
  }
  await finishAccept(req, key, result.postboxId, result.credential, result.redirectUrl, false);
}

/** The postbox is READY and this device has the key it offered: proving that key gets the credential the lost answer carried. */
async function recoverAccepted(req: ConsentRequest, key: OfferedKey): Promise<void> {
  const app = req.applicationName;
  render(h("h1", {}, "Finishing your acceptance…"), h("p", { class: "loading", role: "status" }, "This postbox was already accepted. Checking that it holds the key this device made…"));
  let tokens: IssuedTokens;
  try {
    tokens = await proveKey(req.postboxId, key.privateKey, key.publicJwk);
  } catch (e) {
    const inbox = h("p", {}, h("a", { href: path("app") }, "Go to your inbox"));
    if (e instanceof KeyMismatch || (e instanceof ApiError && e.code === "NOT_FOUND")) {
      forgetCode();
      dropKey(req.postboxId);
      render(
        h("h1", {}, "This link was already used"),
        e instanceof KeyMismatch
          ? notice("warning", `This postbox from ${app} was accepted with a different key than the one this device made (on another device or browser). Its files can be read only where it was accepted, not here.`)
          : notice("warning", `This postbox from ${app} can no longer be opened: it is no longer active.`),
        inbox,
      );
      return;
    }
    render(
      h("h1", {}, "Could not finish accepting"),
      notice("error", `${(e as Error).message} This postbox was accepted with this device's key; try again to finish.`),
      h("div", { class: "actions" }, h("button", { type: "button", class: "primary", onclick: () => void recoverAccepted(req, key) }, "Try again")),
    );
    return;
  }
  forgetCode();
  await finishAccept(req, key, req.postboxId, tokens, null, true);
}

/** Keeps the key with its credential on this device (replacing the pending copy) and shows the result. */
async function finishAccept(req: ConsentRequest, key: OfferedKey, postboxId: string, cred: IssuedTokens, redirectUrl: string | null, recovered: boolean) {
  madeHere.delete(postboxId);
  const backup: KeyBackup | null = key.backupJwk
    ? {
        format: BACKUP_FORMAT,
        version: 1,
        warning: BACKUP_WARNING,
        server: SERVER,
        postboxId,
        applicationName: req.applicationName,
        createdAt: new Date().toISOString(),
        privateKey: key.backupJwk,
        publicKey: key.publicJwk,
        credential: { accessToken: cred.accessToken, accessExpiresAt: cred.accessTokenExpiresAt, refreshToken: cred.refreshToken, refreshExpiresAt: cred.refreshTokenExpiresAt },
      }
    : null;
  let stored = true;
  try {
    await savePostbox({
      postboxId,
      privateKey: key.privateKey,
      publicJwk: key.publicJwk,
      accessToken: cred.accessToken,
      accessExpiresAt: cred.accessTokenExpiresAt,
      refreshToken: cred.refreshToken,
      refreshExpiresAt: cred.refreshTokenExpiresAt,
      applicationName: req.applicationName,
      savedAt: new Date().toISOString(),
      backedUp: false,
    });
  } catch {
    stored = false;
  }
  showAccepted(req, postboxId, redirectUrl, backup, stored, recovered);
}

function showAccepted(req: ConsentRequest, postboxId: string, target: string | null, backup: KeyBackup | null, stored: boolean, recovered: boolean) {
  const app = req.applicationName;
  let backedUp = false;
  const saved = h("div", { "aria-live": "polite" });
  const download = h("button", { type: "button", class: "primary", id: "download-backup" }, "Download key backup");
  download.addEventListener("click", () => {
    if (!backup) return;
    downloadBlob(new Blob([JSON.stringify(backup, null, 2)], { type: "application/json" }), backupFileName(postboxId));
    backedUp = true;
    void updatePostbox(postboxId, { backedUp: true }).catch(() => {});
    saved.replaceChildren(notice("success", `Saved as ${backupFileName(postboxId)}. Keep it somewhere safe and private.`));
  });

  const continueButton = h("button", { type: "button", id: "continue" }, target ? `Continue to ${app}` : "Open your inbox");
  continueButton.addEventListener("click", () => {
    if (backup && !backedUp && !confirm("Continue without a key backup? If this browser's data is cleared, the files sent to you can no longer be read.")) return;
    // The exported private key is dropped with this page; what remains is the non-extractable copy.
    if (target) location.assign(target);
    else location.assign(path("app"));
  });

  render(
    h("h1", {}, "Postbox accepted"),
    notice("success", `${app} can now send you files. They are encrypted to a key that only this device holds.`),
    // The return link came with the answer that was lost; the server gives it only once.
    recovered && req.hasCallback ? notice("info", `Go back to ${app} yourself to carry on there.`) : null,
    stored ? null : notice("error", backup ? "This browser refused to store your key (private browsing or storage disabled). Download the key backup now: it is the only copy." : "This browser refused to store your key (private browsing or storage disabled)."),
    backup
      ? h(
          "section",
          { class: "card secret", "aria-labelledby": "backup-h" },
          h("h2", { id: "backup-h" }, "Save your key backup (secret)"),
          h(
            "p",
            {},
            "Only this browser can decrypt your files. To read them in another browser, or after clearing this one, you need the key backup. It can be downloaded only now: afterwards this browser keeps the key in a form that cannot be exported.",
          ),
          h("p", { class: "small" }, h("strong", {}, "Treat the file like a password: "), "anyone with it can read what is sent to you. Do not email or share it."),
          h("div", { class: "actions" }, download),
          saved,
        )
      : notice(
          "warning",
          "No key backup can be downloaded: the key was made before this page was reloaded, and this browser keeps it only in a form that cannot be exported. Only this browser can decrypt your files; if its data is cleared, they can no longer be read.",
        ),
    h("div", { class: "actions" }, continueButton),
  );
}

async function onDecline(code: string, req: ConsentRequest, status: HTMLElement, busy: (on: boolean) => void) {
  busy(true);
  status.replaceChildren(h("p", { class: "loading", role: "status" }, "Declining…"));
  try {
    const r = (await gql<{ declinePostbox: { redirectUrl: string | null } }>(DECLINE, { input: { code } })).declinePostbox;
    forgetCode();
    dropKey(req.postboxId);
    render(
      h("h1", {}, "Declined"),
      notice("info", `You declined. ${req.applicationName} has been told, and nothing was stored on this device.`),
      r.redirectUrl ? h("p", {}, h("a", { href: r.redirectUrl, class: "button primary", id: "continue" }, `Return to ${req.applicationName}`)) : h("p", {}, h("a", { href: path("app") }, "Go to your inbox")),
    );
  } catch (e) {
    busy(false);
    status.replaceChildren(notice("error", e instanceof NetworkError ? `${e.message} Nothing was declined yet.` : (e as Error).message));
  }
}
