// The inbox (/app): the postboxes this device holds, their files decrypted here,
// receipt acknowledgement, requests for data from the application, and restoring
// a postbox from a key backup.
import { ApiError, NetworkError } from "./api.js";
import { SERVER } from "./base.js";
import { Credential, settlePendingKeys } from "./credential.js";
import { downloadBlob, fill, formatBytes, formatDate, h, notice, relative, render } from "./dom.js";
import { BackupError, decryptJwe, encryptTo, parseBackup, type PublicJwk } from "./keys.js";
import { stopAllWatchers, watchFiles, type FileEvent } from "./live.js";
import { deletePostbox, getPostbox, listPostboxes, savePostbox, updatePostbox, type StoredPostbox } from "./store.js";
import { DEFAULT_PAGE_SIZE as PAGE_SIZE, MAX_PAGE_SIZE } from "../../src/infra/graphql/page-size.js";

const MY_POSTBOX = /* GraphQL */ `
  query MyPostbox { myPostbox { id status expiresAt readyAt applicationName contractId publicKeyThumbprint } }
`;
const FILES = /* GraphQL */ `
  query Files($first: Int, $after: String) {
    postboxFiles(first: $first, after: $after) {
      edges { node { id status size receivedAt expiresAt deliveredAt purgedAt } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;
const FILE = /* GraphQL */ `
  query File($id: ID!) { postboxFile(id: $id) { id descriptor } }
`;
const ACK = /* GraphQL */ `
  mutation Ack($ids: [ID!]!) { acknowledgeFiles(ids: $ids) { id status deliveredAt } }
`;
const CLOSE = /* GraphQL */ `
  mutation Close { closeMyPostbox { id status } }
`;
const REQUESTS = /* GraphQL */ `
  query Requests {
    myDataRequests { id title description acceptedMimeTypes status createdAt expiresAt maxBytes recipientKey { kid alg enc jwk } }
  }
`;
const RESPOND = /* GraphQL */ `
  mutation Respond($id: ID!, $input: DataResponseInput!) { respondToDataRequest(id: $id, input: $input) { id status respondedAt } }
`;
const DECLINE_REQUEST = /* GraphQL */ `
  mutation DeclineRequest($id: ID!) { declineDataRequest(id: $id) { id status } }
`;

interface MyPostbox {
  id: string;
  status: string;
  expiresAt: string;
  readyAt: string | null;
  applicationName: string;
  contractId: string;
  publicKeyThumbprint: string | null;
}
interface FileNode {
  id: string;
  status: "PENDING" | "DELIVERED";
  size: number;
  receivedAt: string;
  expiresAt: string;
  deliveredAt: string | null;
  purgedAt: string | null;
}
interface Descriptor {
  fileName?: string;
  mimeType?: string;
  accounts?: { accountId: string }[];
  reference?: string[];
  tags?: string[];
}
interface DataRequestView {
  id: string;
  title: string;
  description: string | null;
  acceptedMimeTypes: string[];
  status: string;
  createdAt: string;
  expiresAt: string;
  maxBytes: number;
  recipientKey: { kid: string; alg: string; enc: string; jwk: PublicJwk } | null;
}

const TEXT_TYPES = /^(text\/|application\/(json|xml|csv|x-ndjson|ld\+json)|application\/[\w.+-]+\+(json|xml))/i;
// Formats browsers render safely in <img>. SVG is left out: opened on its own it could run script in this origin.
const IMAGE_TYPES = /^image\/(png|jpeg|gif|webp|avif|bmp|x-icon|vnd\.microsoft\.icon)$/i;

function errorText(e: unknown): string {
  if (e instanceof NetworkError || e instanceof ApiError || e instanceof BackupError) return e.message;
  return `Unexpected error: ${(e as Error)?.message ?? String(e)}`;
}

export async function inboxPage(flash?: HTMLElement): Promise<void> {
  stopAllWatchers(); // the cards they update are about to go
  // An acceptance whose answer was lost and whose consent page was closed: settled in the background (a slow
  // server must not hold the inbox up), and a postbox that gains a credential so shows on a fresh render.
  void settlePendingKeys().then((added) => (added ? inboxPage(flash) : undefined), () => {});
  let postboxes: StoredPostbox[];
  try {
    postboxes = await listPostboxes();
  } catch (e) {
    render(h("h1", {}, "Your inbox"), notice("error", (e as Error).message), restoreSection());
    return;
  }
  const refresh = h("button", { type: "button", id: "refresh", onclick: () => void inboxPage() }, "Refresh");
  render(
    h("h1", {}, "Your inbox"),
    flash ?? null,
    h("div", { class: "actions" }, refresh),
    postboxes.length === 0
      ? notice("info", "No postboxes on this device yet. When an application sends you a consent link, open it here to accept; or restore a key backup below.")
      : h("div", { id: "postboxes" }, postboxes.map((p) => postboxCard(p))),
    restoreSection(),
  );
}

function postboxCard(p: StoredPostbox): HTMLElement {
  const cred = new Credential(p);
  const heading = h("h2", {}, p.applicationName ?? "Postbox");
  const body = h("div", {}, h("p", { class: "loading", role: "status" }, "Loading…"));
  const card = h("section", { class: "card postbox", "data-postbox-id": p.postboxId, "aria-label": `Postbox from ${p.applicationName ?? "an application"}` }, heading, body);
  void fillPostbox(cred, heading, body);
  return card;
}

async function fillPostbox(cred: Credential, heading: HTMLElement, body: HTMLElement) {
  const p = cred.postbox;
  let info: MyPostbox;
  try {
    info = (await cred.call<{ myPostbox: MyPostbox }>(MY_POSTBOX)).myPostbox;
  } catch (e) {
    // A credential the server revoked or no longer knows was already replaced by proof of this device's key
    // (see credential.ts); what is left here is a postbox that is over, or the network.
    body.replaceChildren(
      notice(e instanceof NetworkError ? "error" : "warning", errorText(e)),
      h("p", { class: "small muted" }, `Postbox ${p.postboxId}. If it has expired or was closed, nothing more can be read from it and you can remove it from this device.`),
      h("div", { class: "actions" }, h("button", { type: "button", onclick: () => void fillPostbox(cred, heading, body) }, "Try again"), removeButton(p)),
    );
    return;
  }
  if (info.applicationName !== p.applicationName) await updatePostbox(p.postboxId, { applicationName: info.applicationName }).catch(() => {});
  heading.replaceChildren(`${info.applicationName} `, h("span", { class: `badge ${info.status}` }, info.status));

  const files = h("div", { class: "files-section" }, h("p", { class: "loading" }, "Loading files…"));
  // Outside the list, which every reload replaces: an acknowledgement's outcome stays readable.
  const ackStatus = h("div", { class: "ack-status", "aria-live": "polite" });
  const view: FilesView = { cred, target: files, status: ackStatus, started: 0, finished: 0, olderThan: null, decrypted: new Map() };
  const requests = h("div", { class: "requests-section" });
  fill(
    body,
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Expires"),
      h("dd", {}, `${formatDate(info.expiresAt)} (${relative(info.expiresAt)})`),
      h("dt", {}, "Postbox"),
      h("dd", {}, h("code", {}, info.id)),
      h("dt", {}, "Key on this device"),
      h("dd", {}, h("code", { title: "RFC 7638 thumbprint" }, (p.publicJwk.kid ?? "").slice(0, 16) + "…")),
    ),
    p.backedUp ? null : notice("warning", "No key backup was saved for this postbox. If this browser's data is cleared, its files can no longer be read."),
    requests,
    h("h3", {}, "Files"),
    files,
    ackStatus,
    h(
      "details",
      {},
      h("summary", {}, "Manage this postbox"),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "danger", onclick: () => void closePostbox(cred, info.applicationName) }, "Close postbox"),
        removeButton(p),
      ),
    ),
  );
  void loadRequests(cred, info.applicationName, requests);
  void loadFiles(view);
  // New, delivered or purged files (from the application, or another device of the user) show up as they happen.
  // A stream opens with every file's current state, and this device's own acknowledgements come back as
  // changes: the list reloads only for what it does not show yet.
  let burst: FileEvent[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const check = () => {
    // A load in flight may or may not include these changes: judge them against its outcome.
    if (view.started !== view.finished) return void (view.whenSettled = check);
    const events = burst;
    burst = [];
    if (!events.every((e) => covered(view, e))) void loadFiles(view);
  };
  watchFiles(cred, (e) => {
    burst.push(e);
    clearTimeout(timer);
    timer = setTimeout(check, 200); // one check for a burst of pushes
  });
}

function removeButton(p: StoredPostbox): HTMLButtonElement {
  return h(
    "button",
    {
      type: "button",
      onclick: async () => {
        if (!confirm(`Remove this postbox and its key from this browser? Without a key backup its files can no longer be read here.`)) return;
        await deletePostbox(p.postboxId);
        await inboxPage(notice("info", "The postbox was removed from this device."));
      },
    },
    "Remove from this device",
  );
}

async function closePostbox(cred: Credential, app: string) {
  if (!confirm(`Close this postbox? ${app} will not be able to send you anything more through it.`)) return;
  try {
    await cred.call(CLOSE);
    await inboxPage(notice("info", `The postbox from ${app} is closed.`));
  } catch (e) {
    await inboxPage(notice("error", errorText(e)));
  }
}

// ---------------------------------------------------------------------------
// Files

/** One postbox's file list. */
interface FilesView {
  cred: Credential;
  /** Holds the list; each (re)load replaces its content. */
  target: HTMLElement;
  /** The outcome of the latest acknowledgement, kept across reloads. */
  status: HTMLElement;
  /** The latest (re)load started: an older one that finishes later must not replace it. */
  started: number;
  /** The latest (re)load that finished; equal to `started` when none is in flight. */
  finished: number;
  /** Runs once the load in flight finishes. */
  whenSettled?: () => void;
  /** The files received before this time are on pages not shown ("Show older files"); null when every file is. */
  olderThan: string | null;
  /**
   * Files already fetched and decrypted, by id: a reload (after a new file arrives) shows
   * them again from here instead of downloading and decrypting each again (and adding a
   * fetch to the audit log each time). Kept only for files the list shows.
   */
  decrypted: Map<string, Decrypted>;
}

interface Decrypted {
  descriptor: Descriptor;
  bytes: Uint8Array;
  /** An image preview's object URL, made once per file and revoked when the file leaves the list. */
  previewUrl?: string;
}

/** Whether a change needs no reload: the list shows it already, or it concerns a file on a page not shown. */
function covered(view: FilesView, e: FileEvent): boolean {
  const state = view.target.querySelector<HTMLElement>(`[data-file-id="${CSS.escape(e.fileId)}"]`)?.dataset.state;
  // A change's time is at or after the file's arrival (ISO times of one format compare as strings).
  if (state === undefined && view.olderThan !== null && e.at < view.olderThan) return true;
  if (e.change === "ADDED") return state !== undefined;
  if (e.change === "DELIVERED") return state === "DELIVERED" || state === "PURGED";
  return state === "PURGED";
}

function settled(view: FilesView, load: number) {
  view.finished = load;
  const next = view.whenSettled;
  view.whenSettled = undefined;
  next?.();
}

async function loadFiles(view: FilesView, after?: string, list?: HTMLUListElement, pending: string[] = []) {
  if (!list) view.started++; // "Show older files" continues the current load
  const load = view.started;
  try {
    await showFiles(view, () => view.started !== load, after, list, pending);
  } finally {
    if (view.started === load) settled(view, load); // else the load that superseded it settles
  }
}

/**
 * How many files a (re)load of the whole list asks for: as many as it shows now, so that
 * the pages opened with "Show older files" stay open (up to the server's largest page).
 */
function reloadSize(target: HTMLElement): number {
  const shown = target.querySelectorAll("ul.files > li").length;
  return Math.min(MAX_PAGE_SIZE, Math.max(PAGE_SIZE, shown));
}

/** Fetches a page of files and shows it, unless `superseded` says a later load took over. */
async function showFiles(view: FilesView, superseded: () => boolean, after: string | undefined, list: HTMLUListElement | undefined, pending: string[]) {
  const { cred, target } = view;
  let page: { edges: { node: FileNode }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };
  try {
    page = (await cred.call<{ postboxFiles: typeof page }>(FILES, { first: list ? PAGE_SIZE : reloadSize(target), after: after ?? null })).postboxFiles;
  } catch (e) {
    if (superseded()) return;
    target.replaceChildren(notice("error", errorText(e)), h("button", { type: "button", onclick: () => void loadFiles(view) }, "Try again"));
    return;
  }
  if (superseded()) return;
  // A reload (after a change) builds the new list aside and shows it once every file in it
  // is decrypted: the files already on screen stay readable instead of going back to "Decrypting…".
  let shown: Element | null = null;
  if (!list) {
    if (page.edges.length === 0) {
      target.replaceChildren(h("p", { class: "muted" }, "No files yet."));
      view.olderThan = null;
      return;
    }
    list = h("ul", { class: "files" });
    shown = target.querySelector("ul.files");
    if (!shown) target.replaceChildren(list);
  }
  const ackArea = h("div", { class: "ack" });
  const decrypted = await Promise.all(page.edges.map(({ node }) => fileItem(view, node, list!)));
  if (superseded()) return;
  if (shown) {
    target.replaceChildren(list);
    forgetHidden(view);
  }
  view.olderThan = page.pageInfo.hasNextPage ? page.edges[page.edges.length - 1].node.receivedAt : null;
  for (const [i, ok] of decrypted.entries()) if (ok && page.edges[i].node.status === "PENDING") pending.push(page.edges[i].node.id);
  target.querySelector(".ack")?.remove();
  target.querySelector(".more")?.remove();
  if (page.pageInfo.hasNextPage && page.pageInfo.endCursor) {
    const cursor = page.pageInfo.endCursor;
    target.append(h("button", { type: "button", class: "more", onclick: () => void loadFiles(view, cursor, list, pending) }, "Show older files"));
  }
  if (pending.length) {
    const ack = h("button", { type: "button", class: "primary", id: "acknowledge" }, `Confirm receipt (${pending.length} new ${pending.length === 1 ? "file" : "files"})`);
    ack.addEventListener("click", () => void acknowledge(view, [...pending], ack, ackArea));
    ackArea.replaceChildren(h("p", { class: "small muted" }, "Confirming tells the application the files reached you; the server then deletes its encrypted copy sooner."), ack);
    target.append(ackArea);
  }
}

async function acknowledge(view: FilesView, ids: string[], button: HTMLButtonElement, area: HTMLElement) {
  button.disabled = true;
  // A reload in flight read the list before this acknowledgement and would show these files pending
  // again, with a fresh button: drop it, and load once the acknowledgement is done.
  const interrupted = view.started !== view.finished;
  if (interrupted) view.started++;
  try {
    const done = (await view.cred.call<{ acknowledgeFiles: { id: string; status: string }[] }>(ACK, { ids })).acknowledgeFiles;
    for (const f of done) {
      const item = view.target.querySelector<HTMLElement>(`[data-file-id="${CSS.escape(f.id)}"]`);
      const badge = item?.querySelector(".badge");
      if (item && badge && item.dataset.state !== "PURGED") {
        item.dataset.state = f.status;
        badge.className = `badge ${f.status}`;
        badge.textContent = f.status;
      }
    }
    area.remove();
    view.status.replaceChildren(notice("success", `Receipt confirmed for ${done.length} ${done.length === 1 ? "file" : "files"}.`));
  } catch (e) {
    button.disabled = false;
    view.status.replaceChildren(notice("error", errorText(e)));
  } finally {
    if (interrupted) void loadFiles(view);
  }
}

/** Drops the decrypted files (and revokes the preview URLs) of files the list no longer shows. */
function forgetHidden(view: FilesView) {
  for (const [id, d] of view.decrypted) {
    if (view.target.querySelector(`[data-file-id="${CSS.escape(id)}"]`)) continue;
    if (d.previewUrl) URL.revokeObjectURL(d.previewUrl);
    view.decrypted.delete(id);
  }
}

/** Fetches, decrypts and shows one file (fetched and decrypted once per view); returns whether it could be read. */
async function fileItem(view: FilesView, f: FileNode, list: HTMLUListElement): Promise<boolean> {
  const cred = view.cred;
  const name = h("span", { class: "name" }, "Decrypting…");
  const content = h("div", {});
  const badge = h("span", { class: `badge ${f.status}` }, f.status);
  const meta = h("div", { class: "meta" }, `Received ${formatDate(f.receivedAt)} · ${formatBytes(f.size)} encrypted`);
  const item = h("li", { class: "file", "data-file-id": f.id, "data-state": f.purgedAt ? "PURGED" : f.status }, h("div", {}, name, " ", badge), meta, content);
  list.append(item);
  if (f.purgedAt) {
    const gone = view.decrypted.get(f.id);
    if (gone?.previewUrl) URL.revokeObjectURL(gone.previewUrl);
    view.decrypted.delete(f.id);
    name.textContent = "Deleted file";
    content.append(h("p", { class: "muted small" }, `Its content was deleted from the server on ${formatDate(f.purgedAt)}.`));
    return false;
  }
  const p = cred.postbox;
  let cached = view.decrypted.get(f.id);
  if (!cached) {
    try {
      // The descriptor over GraphQL; the file from the download route, which streams large files.
      const file = (await cred.call<{ postboxFile: { descriptor: string } }>(FILE, { id: f.id })).postboxFile;
      const descriptor: Descriptor = JSON.parse(new TextDecoder().decode(await decryptJwe(file.descriptor, p.privateKey, p.publicJwk)));
      const bytes = await decryptJwe(await cred.download(f.id), p.privateKey, p.publicJwk);
      cached = view.decrypted.get(f.id) ?? { descriptor, bytes }; // a load running alongside may have got it first
      view.decrypted.set(f.id, cached);
    } catch (e) {
      name.textContent = "Unreadable file";
      const msg = e instanceof ApiError || e instanceof NetworkError ? e.message : "It could not be decrypted with this device's key (it was encrypted to another key, or damaged).";
      content.append(notice("error", msg));
      return false;
    }
  }
  const { descriptor, bytes } = cached;
  const fileName = safeName(descriptor.fileName);
  const mimeType = typeof descriptor.mimeType === "string" && descriptor.mimeType ? descriptor.mimeType : "application/octet-stream";
  name.textContent = fileName;
  meta.textContent = `${mimeType} · ${formatBytes(bytes.length)} · received ${formatDate(f.receivedAt)}`;
  const blob = new Blob([bytes as BlobPart], { type: mimeType });
  const download = h("button", { type: "button", class: "download", onclick: () => downloadBlob(blob, fileName) }, `Download ${fileName}`);

  const base = mimeType.split(";")[0].trim();
  if (TEXT_TYPES.test(base)) {
    let text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
    if (/json/i.test(base)) {
      try {
        text = JSON.stringify(JSON.parse(text), null, 2);
      } catch {
        /* shown as sent */
      }
    }
    content.append(h("pre", { class: "content", tabindex: 0, "aria-label": `Content of ${fileName}` }, text), download);
  } else if (IMAGE_TYPES.test(base)) {
    cached.previewUrl ??= URL.createObjectURL(blob);
    const img = h("img", { class: "preview", src: cached.previewUrl, alt: `Preview of ${fileName}` });
    img.addEventListener("error", () => img.replaceWith(notice("warning", "This image could not be displayed; download it instead.")));
    content.append(img, download);
  } else {
    content.append(h("p", { class: "small" }, `This ${mimeType} file cannot be shown here.`), download);
  }
  const tags = [...(descriptor.tags ?? []), ...(descriptor.reference ?? [])].filter((t) => typeof t === "string");
  if (tags.length) content.append(h("p", { class: "small muted" }, `Tags: ${tags.join(", ")}`));
  return true;
}

function safeName(n: unknown): string {
  // Controls, path separators and bidirectional overrides (which can make "a\u202Efdp.exe" show as "aexe.pdf").
  const s = typeof n === "string" ? n.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069/\\]/g, "_").trim() : "";
  return s.slice(0, 255) || "file";
}

// ---------------------------------------------------------------------------
// Requests for data

async function loadRequests(cred: Credential, app: string, target: HTMLElement) {
  let requests: DataRequestView[];
  try {
    requests = (await cred.call<{ myDataRequests: DataRequestView[] }>(REQUESTS)).myDataRequests;
  } catch (e) {
    target.replaceChildren(notice("error", errorText(e)));
    return;
  }
  target.replaceChildren(...requests.map((r) => requestCard(cred, app, r, target)));
}

function mimeAllowed(type: string, accepted: string[]): boolean {
  if (accepted.length === 0) return true;
  const t = type.toLowerCase();
  return accepted.some((a) => a === t || (a.endsWith("/*") && t.startsWith(a.slice(0, -1))));
}

function requestCard(cred: Credential, app: string, r: DataRequestView, list: HTMLElement): HTMLElement {
  const idBase = `req-${r.id}`;
  const status = h("div", { "aria-live": "polite" });
  const textAllowed = mimeAllowed("text/plain", r.acceptedMimeTypes);
  const fileInput = h("input", { type: "file", id: `${idBase}-file`, name: "file", accept: r.acceptedMimeTypes.join(",") || null });
  const textArea = h("textarea", { id: `${idBase}-text`, name: "text", rows: 4 });
  const fileChoice = h("input", { type: "radio", name: `${idBase}-kind`, id: `${idBase}-kind-file`, value: "file", checked: true });
  const textChoice = h("input", { type: "radio", name: `${idBase}-kind`, id: `${idBase}-kind-text`, value: "text" });
  const fileField = h("div", {}, h("label", { for: fileInput.id }, "File to share"), fileInput);
  const textField = h("div", { class: "hidden" }, h("label", { for: textArea.id }, "Text to share"), textArea);
  const sync = () => {
    fileField.classList.toggle("hidden", !fileChoice.checked);
    textField.classList.toggle("hidden", fileChoice.checked);
  };
  fileChoice.addEventListener("change", sync);
  textChoice.addEventListener("change", sync);

  const share = h("button", { type: "submit", class: "primary" }, "Encrypt and share");
  const decline = h("button", { type: "button", class: "danger" }, "Decline");
  const form = h(
    "form",
    { class: "request-form", "aria-describedby": `${idBase}-desc` },
    textAllowed
      ? h(
          "fieldset",
          {},
          h("legend", {}, "What to share"),
          h("label", { class: "radio", for: fileChoice.id }, fileChoice, "A file"),
          h("label", { class: "radio", for: textChoice.id }, textChoice, "Text I type"),
        )
      : null,
    fileField,
    textAllowed ? textField : null,
    h("div", { class: "actions" }, share, decline),
    status,
  );
  const setBusy = (on: boolean) => {
    share.disabled = on;
    decline.disabled = on;
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    void respond(cred, app, r, fileChoice.checked || !textAllowed ? { file: fileInput.files?.[0] } : { text: textArea.value }, status, setBusy, list);
  });
  decline.addEventListener("click", () => void declineRequest(cred, app, r, status, setBusy, list));

  return h(
    "section",
    { class: "card request", "data-request-id": r.id, "aria-labelledby": `${idBase}-title` },
    h("h3", { id: `${idBase}-title` }, `${app} asks: ${r.title}`),
    h(
      "div",
      { id: `${idBase}-desc` },
      r.description ? h("p", {}, r.description) : null,
      h("p", { class: "small muted" }, `Accepted: ${r.acceptedMimeTypes.length ? r.acceptedMimeTypes.join(", ") : "any file or text"} · up to ${formatBytes(r.maxBytes)} · answer by ${formatDate(r.expiresAt)} (${relative(r.expiresAt)}).`),
      h("p", { class: "small muted" }, `What you share is encrypted on this device so that only ${app} can read it.`),
    ),
    r.recipientKey ? form : notice("warning", `${app} cannot receive answers at the moment.`),
  );
}

async function respond(
  cred: Credential,
  app: string,
  r: DataRequestView,
  choice: { file?: File; text?: string },
  status: HTMLElement,
  setBusy: (on: boolean) => void,
  list: HTMLElement,
) {
  let bytes: Uint8Array;
  let fileName: string;
  let mimeType: string;
  if (choice.text !== undefined) {
    if (!choice.text.trim()) return void status.replaceChildren(notice("error", "Type the text to share first."));
    bytes = new TextEncoder().encode(choice.text);
    fileName = "message.txt";
    mimeType = "text/plain;charset=utf-8";
  } else {
    const file = choice.file;
    if (!file) return void status.replaceChildren(notice("error", "Choose a file to share first."));
    mimeType = file.type || "application/octet-stream";
    if (!mimeAllowed(mimeType, r.acceptedMimeTypes)) {
      return void status.replaceChildren(notice("error", `${app} accepts ${r.acceptedMimeTypes.join(", ")}; this file is ${mimeType}.`));
    }
    if (file.size > r.maxBytes) return void status.replaceChildren(notice("error", `This file is ${formatBytes(file.size)}; at most ${formatBytes(r.maxBytes)} can be sent.`));
    if (file.size === 0) return void status.replaceChildren(notice("error", "This file is empty."));
    bytes = new Uint8Array(await file.arrayBuffer());
    fileName = file.name;
  }
  setBusy(true);
  status.replaceChildren(h("p", { class: "loading", role: "status" }, "Encrypting on this device…"));
  try {
    const key = r.recipientKey!.jwk;
    const ciphertext = await encryptTo(key, bytes);
    const descriptor = await encryptTo(key, new TextEncoder().encode(JSON.stringify({ fileName, mimeType, size: bytes.length })), "json");
    status.replaceChildren(h("p", { class: "loading", role: "status" }, "Sending…"));
    await cred.call(RESPOND, { id: r.id, input: { ciphertext, descriptor } });
  } catch (e) {
    setBusy(false);
    status.replaceChildren(notice("error", errorText(e)));
    return;
  }
  list.querySelector(`[data-request-id="${CSS.escape(r.id)}"]`)?.replaceWith(notice("success", `Shared “${fileName}” with ${app}, encrypted so that only ${app} can read it.`));
}

async function declineRequest(cred: Credential, app: string, r: DataRequestView, status: HTMLElement, setBusy: (on: boolean) => void, list: HTMLElement) {
  if (!confirm(`Decline ${app}'s request “${r.title}”?`)) return;
  setBusy(true);
  try {
    await cred.call(DECLINE_REQUEST, { id: r.id });
  } catch (e) {
    setBusy(false);
    status.replaceChildren(notice("error", errorText(e)));
    return;
  }
  list.querySelector(`[data-request-id="${CSS.escape(r.id)}"]`)?.replaceWith(notice("info", `You declined “${r.title}”. ${app} has been told.`));
}

// ---------------------------------------------------------------------------
// Restore from a key backup

function restoreSection(): HTMLElement {
  const input = h("input", { type: "file", id: "restore-file", accept: ".json,application/json" });
  const status = h("div", { "aria-live": "polite", id: "restore-status" });
  input.addEventListener("change", () => {
    const file = input.files?.[0];
    if (file) void restore(file, status, input);
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "restore-h" },
    h("h2", { id: "restore-h" }, "Restore from a key backup"),
    h("p", { class: "small" }, "Accepted a postbox in another browser? Choose the key backup file you downloaded then, and its files can be read here too."),
    h("label", { for: "restore-file" }, "Key backup file"),
    input,
    status,
  );
}

async function restore(file: File, status: HTMLElement, input: HTMLInputElement) {
  status.replaceChildren(h("p", { class: "loading", role: "status" }, "Checking the backup…"));
  try {
    if (file.size > 64 * 1024) throw new BackupError("That file is too large to be a Postbox key backup.");
    const { backup, privateKey } = await parseBackup(await file.text(), SERVER);
    const existing = await getPostbox(backup.postboxId);
    if (existing && !confirm("This postbox is already on this device. Replace its key and credential with the backup's?")) {
      status.replaceChildren();
      input.value = "";
      return;
    }
    await savePostbox({
      postboxId: backup.postboxId,
      privateKey,
      publicJwk: backup.publicKey,
      accessToken: backup.credential.accessToken,
      accessExpiresAt: backup.credential.accessExpiresAt,
      refreshToken: backup.credential.refreshToken,
      refreshExpiresAt: backup.credential.refreshExpiresAt,
      applicationName: backup.applicationName,
      savedAt: new Date().toISOString(),
      backedUp: true,
    });
    await inboxPage(notice("success", `Restored the postbox from ${backup.applicationName ?? "the application"} from its key backup.`));
  } catch (e) {
    input.value = "";
    status.replaceChildren(notice("error", errorText(e)));
  }
}
