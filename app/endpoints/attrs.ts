// Reading the attributes endpoint blocks share: hosts, ports, ca_cert.
import type { BlockReader } from "../policy/hcl/reader.ts";
import { isIP } from "node:net";

const HOST_PATTERN = /^(\*\.)?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;

/** `hosts = [...]`: names, `*.suffix` patterns (when allowed) and IP literals, lower-case, no trailing dot. */
export function readHosts(r: BlockReader, opts: { wildcards: boolean } = { wildcards: true }): string[] {
  const values = r.list("hosts");
  if (values === undefined) return [];
  if (values.length === 0) r.error(r.line("hosts"), "hosts must name at least one host");
  const hosts: string[] = [];
  for (const v of values) {
    const host = v.toLowerCase().replace(/\.$/, "");
    if (!opts.wildcards && host.startsWith("*.")) r.error(r.line("hosts"), `hosts: "${v}": this endpoint type takes exact names, not patterns`);
    else if (HOST_PATTERN.test(host) || isIP(host) !== 0) hosts.push(host);
    else r.error(r.line("hosts"), `hosts: "${v}" is not a host name or *.suffix`);
  }
  return hosts;
}

export function readPorts(r: BlockReader): number[] | undefined {
  if (!r.has("ports")) return undefined;
  const v = r.raw("ports");
  if (Array.isArray(v) && v.length > 0 && v.every((p) => Number.isInteger(p) && p >= 1 && p <= 65535)) return v as number[];
  r.error(r.line("ports"), "ports must be a non-empty list of TCP ports (1-65535)");
  return undefined;
}

/** One `host:port` (or `[v6]:port`, or a bare host with the default port), lower-case. */
export function parseHostPort(text: string, defaultPort: number): { host: string; port: number } | undefined {
  const m = /^\[([0-9a-fA-F:.]+)\](?::(\d{1,5}))?$/.exec(text) ?? /^([^:\s[\]]+)(?::(\d{1,5}))?$/.exec(text);
  if (!m) return undefined;
  const host = m[1]!.toLowerCase().replace(/\.$/, "");
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  if (isIP(host) === 0 && !HOST_PATTERN.test(host)) return undefined;
  if (host.startsWith("*.")) return undefined;
  return { host, port };
}

/** `ca_cert = "file.pem"`: the PEM text, or undefined (with an error when it cannot be read or holds no certificate). */
export function readCaCert(r: BlockReader, readText: (r: BlockReader, attr: string) => string | undefined): string | undefined {
  if (!r.has("ca_cert")) return undefined;
  const text = readText(r, "ca_cert");
  if (text === undefined) return undefined;
  if (!text.includes("-----BEGIN CERTIFICATE-----")) {
    r.error(r.line("ca_cert"), `ca_cert: ${r.string("ca_cert") ?? ""} holds no PEM certificate`);
    return undefined;
  }
  return text;
}
