// Text as PostgreSQL can store it. A NUL character is refused by its text and jsonb
// types; an unpaired UTF-16 surrogate (which JSON and GraphQL escapes can carry, and
// which slicing a string can make) is stored as U+FFFD, so a value hashed before it
// was stored would no longer match the row. Requests with such text are refused
// (graphql/text-input.ts); text the server writes itself goes through storableText.

// ES2024, in Node since 20; the project's lib stays ES2023 so that nothing newer slips in.
declare global {
  interface String {
    isWellFormed(): boolean;
    toWellFormed(): string;
  }
}

/** Whether a string can be stored as it is. */
export const isStorableText = (s: string): boolean => s.isWellFormed() && !s.includes("\0");

/** `s` as it will be stored: unpaired surrogates and NULs become U+FFFD. */
export const storableText = (s: string): string => (isStorableText(s) ? s : s.toWellFormed().replaceAll("\0", "\uFFFD"));

/** At most `max` UTF-16 units of `text`, never half of a surrogate pair. */
export function clipText(text: string, max: number): string {
  if (text.length <= max) return text;
  const code = text.charCodeAt(max - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}
