import { type LookupAddress, type LookupAllOptions, lookup } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import type { Dispatcher } from 'undici';

/**
 * Outbound HTTP for addresses that tenants choose (LLM providers today; webhooks and OAuth
 * providers later): an undici Agent that refuses to connect to anything but public unicast
 * addresses, unless the operator allows a network (OUTBOUND_ALLOWED_NETWORKS). The check runs on
 * the address actually connected to, after DNS, so a name that resolves (or re-resolves) to
 * 169.254.169.254 or 10.0.0.5 is refused too (OWASP SSRF Prevention Cheat Sheet; ASVS 5.0 V1.3 /
 * 4.0 V12.6.1). Redirects are not followed: undici.request follows none unless told to.
 */
export type Network = [ipaddr.IPv4 | ipaddr.IPv6, number];

export class OutboundRefused extends Error {
  constructor(
    readonly host: string,
    readonly address: string,
  ) {
    super(
      `${host} resolves to ${address}, a private, loopback or otherwise non-public address; ` +
        'an operator may allow it with OUTBOUND_ALLOWED_NETWORKS',
    );
    this.name = 'OutboundRefused';
  }
}

/** Parses "127.0.0.0/8, ::1/128, 10.1.2.3" (a bare address is its own /32 or /128); throws naming the bad entry. */
export function parseNetworks(text: string): Network[] {
  return text
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean)
    .map((entry) => {
      try {
        if (entry.includes('/')) return ipaddr.parseCIDR(entry);
        const address = ipaddr.parse(entry);
        return [address, address.kind() === 'ipv4' ? 32 : 128] as Network;
      } catch {
        throw new Error(`"${entry}" is not an address or a CIDR network such as 10.0.0.0/8`);
      }
    });
}

/**
 * `::10.0.0.1` as `::a00:1`: ipaddr.js reads any dotted tail as IPv4-mapped (`::ffff:…`), which
 * would judge an IPv4-compatible address by its IPv4 (URLs and DNS already give the hex form).
 */
function withHexTail(address: string): string {
  const dotted = /^(.*:)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(address);
  if (!dotted) return address;
  const [a, b, c, d] = dotted.slice(2).map(Number);
  if ([a, b, c, d].some((octet) => octet > 255)) return address;
  return `${dotted[1]}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
}

/** ::/96, the deprecated IPv4-compatible addresses (RFC 4291 §2.5.5.1): `::10.0.0.1` is `::a00:1`. */
const IPV4_COMPATIBLE = ipaddr.parseCIDR('::/96');

/**
 * Public unicast, or inside a network the operator allowed. IPv4-mapped IPv6 (`::ffff:a.b.c.d`)
 * is judged as the IPv4 address it is. Every other IPv6 form that embeds an IPv4 address is
 * refused whatever it embeds, since the host or a gateway may route it to that address: the
 * IPv4-compatible `::a.b.c.d` (which ipaddr.js calls unicast, hence the explicit check), NAT64
 * `64:ff9b::/96` and `64:ff9b:1::/48` (RFC 6052, RFC 8215), SIIT `::ffff:0:a.b.c.d` (RFC 6145),
 * 6to4 `2002::/16` (RFC 3056) and Teredo `2001::/32` (RFC 4380): none of them is 'unicast'.
 */
export function addressAllowed(address: string, allowed: readonly Network[]): boolean {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.process(withHexTail(address));
  } catch {
    return false;
  }
  if (ip.range() === 'unicast' && !(ip.kind() === 'ipv6' && ip.match(IPV4_COMPATIBLE))) return true;
  return allowed.some(([network, bits]) => network.kind() === ip.kind() && ip.match(network, bits));
}

/**
 * Plain http is for the operator's own networks only: a host that is an address literal inside
 * OUTBOUND_ALLOWED_NETWORKS (a model server, a test provider on loopback). Everything else is https.
 */
export function plainHttpAllowed(url: URL, allowed: readonly Network[]): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!isIP(host)) return false;
  const ip = ipaddr.process(host);
  return allowed.some(([network, bits]) => network.kind() === ip.kind() && ip.match(network, bits));
}

/** Refuses a URL whose host is an address literal outside the policy (names are checked at connect). */
export function checkUrlHost(url: URL, allowed: readonly Network[]): void {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) && !addressAllowed(host, allowed)) throw new OutboundRefused(url.hostname, host);
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** dns.lookup that fails when any address of the name is outside the policy (none is half-trusted). */
function guardedLookup(allowed: readonly Network[]) {
  return (hostname: string, options: LookupAllOptions | { all?: boolean }, callback: LookupCallback) => {
    lookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, []);
      const refused = addresses.find((a) => !addressAllowed(a.address, allowed));
      if (refused) return callback(new OutboundRefused(hostname, refused.address), []);
      if (options.all) return callback(null, addresses);
      callback(null, addresses[0].address, addresses[0].family);
    });
  };
}

export type RequestOptions = Omit<Dispatcher.RequestOptions, 'origin' | 'path' | 'dispatcher'> & {
  method: 'POST' | 'GET';
};

export interface Outbound {
  allowed: readonly Network[];
  /** undici's request through the guarded agent: for every request to a tenant-chosen address. */
  request(url: string, options: RequestOptions): Promise<Dispatcher.ResponseData>;
  /** fetch through the same agent (for libraries that take a fetch, such as openid-client); no redirects. */
  fetch(url: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

/**
 * undici (about 20 MB once loaded) and its agent are loaded on the first outbound request, so an
 * instance that never calls out never carries them.
 */
export function createOutbound(allowed: readonly Network[]): Outbound {
  let loaded:
    | Promise<{ request: typeof import('undici').request; fetch: typeof import('undici').fetch; agent: Dispatcher }>
    | undefined;
  const load = () => {
    loaded ??= import('undici').then(({ Agent, request, fetch }) => ({
      request,
      fetch,
      agent: new Agent({
        connect: { lookup: guardedLookup(allowed) as never },
        keepAliveTimeout: 30_000,
        // Many concurrent calls to one provider share its connections.
        connections: 256,
      }),
    }));
    return loaded;
  };
  return {
    allowed,
    async request(url, options) {
      checkUrlHost(new URL(url), allowed);
      const { request, agent } = await load();
      return request(url, { ...options, dispatcher: agent });
    },
    async fetch(url, init) {
      checkUrlHost(new URL(url), allowed);
      const { fetch, agent } = await load();
      const response = await fetch(url, { ...(init as object), redirect: 'manual', dispatcher: agent });
      return response as unknown as Response;
    },
    async close() {
      if (loaded) await (await loaded).agent.close();
    },
  };
}
