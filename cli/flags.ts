// Parsers for flag values that more than one command takes.

/** A TCP port (0 = any free one); `flag` names the flag in the error. */
export function parsePort(text: string, flag: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`${flag} expects a port number, got ${text}`);
  }
  return port;
}
