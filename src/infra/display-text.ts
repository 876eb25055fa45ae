// Text that people read (descriptor fields on the user's device, an app's reference on the
// consent page): no control characters, and none of the bidirectional embeddings, overrides
// and isolates, with which "invoice\u202Efdp.exe" shows as "invoiceexe.pdf" (the marks
// U+200E/U+200F stay allowed).
export const UNSAFE_DISPLAY_CHARS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
export const UNSAFE_DISPLAY_CHARS_NOTE = "control characters or bidirectional overrides (U+202A–U+202E, U+2066–U+2069)";
