// HTTP/1.1 header lists keep wire order and the sender's case, so a request
// the gateway forwards looks like the one the agent sent except for the
// slots the gateway owns (credentials, hop-by-hop headers).

/** Header name/value pairs in wire order; names in their original case. */
export type HeaderList = [name: string, value: string][];
