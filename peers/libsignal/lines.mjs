// Bounded line reader for the peer's stdin.
//
// node:readline buffers a line of any length; a peer that reads requests from another program
// must not. readLines() yields each complete line (without its "\n", a trailing "\r" removed) as
// a string, and for a line longer than maxBytes yields a TooLong marker instead (the line's
// bytes are dropped as they arrive, never held), so the caller can answer with an error and go
// on with the next line.

export class TooLong {
  constructor(length) {
    this.length = length; // bytes seen before the newline
  }
}

export async function* readLines(stream, maxBytes) {
  let parts = []; // Buffers of the current line
  let size = 0;
  let overflow = false; // the current line is over maxBytes: drop it until its newline
  for await (const chunk of stream) {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      size += piece.length;
      if (!overflow && size > maxBytes) {
        overflow = true;
        parts = [];
      }
      if (!overflow) parts.push(piece);
      if (nl === -1) break;
      if (overflow) yield new TooLong(size);
      else {
        let line = Buffer.concat(parts).toString('utf8');
        if (line.endsWith('\r')) line = line.slice(0, -1);
        yield line;
      }
      parts = [];
      size = 0;
      overflow = false;
      start = nl + 1;
    }
  }
  if (overflow) yield new TooLong(size);
  else if (size > 0) yield Buffer.concat(parts).toString('utf8');
}
