/**
 * An `error_description` as RFC 6749 §5.2 allows it: printable ASCII without `"` and `\`
 * (%x20-21 / %x23-5B / %x5D-7E). Double quotes become single ones; anything else outside the set
 * becomes `?`; at most 300 characters.
 */
export function oauthErrorDescription(text: string): string {
  return text
    .replaceAll('"', "'")
    .replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, '?')
    .slice(0, 300);
}
