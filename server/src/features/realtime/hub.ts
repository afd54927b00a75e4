import type { Deps } from '../../deps.js';
import type { UserPrincipal } from '../../http/principal.js';
import type { Envelope } from './bus.js';
import { CLOSE, type FeedConnection, outMessage, REVALIDATE_SECONDS } from './connection.js';
import { guarded } from './guard.js';

/**
 * This instance's authenticated connections by tenant and user, fed by the realtime bus. Events
 * that revoke a credential close the connections opened with it, after telling them why.
 */
export class Hub {
  private readonly tenants = new Map<string, Map<string, Set<FeedConnection>>>();
  private readonly unlisten: () => void;
  /** Each second, the connections of that second's slot have their credential checked again. */
  private readonly revalidation: NodeJS.Timeout;
  private second = 0;
  size = 0;

  constructor(private readonly deps: Deps) {
    this.unlisten = deps.realtime.listen((envelope) => this.deliver(envelope));
    this.revalidation = setInterval(
      guarded(deps.log, 'revalidation round', () => this.revalidate()),
      1_000,
    );
    this.revalidation.unref();
  }

  private revalidate(): void {
    this.second = (this.second + 1) % REVALIDATE_SECONDS;
    for (const users of this.tenants.values()) {
      for (const connections of users.values()) {
        for (const connection of connections) {
          if (connection.slot === this.second) connection.run('revalidation', () => connection.revalidate());
        }
      }
    }
  }

  add(connection: FeedConnection): void {
    const principal = connection.principal as UserPrincipal;
    let users = this.tenants.get(principal.tenantId);
    if (!users) {
      users = new Map();
      this.tenants.set(principal.tenantId, users);
    }
    let connections = users.get(principal.userId);
    if (!connections) {
      connections = new Set();
      users.set(principal.userId, connections);
    }
    if (!connections.has(connection)) this.size++;
    connections.add(connection);
  }

  remove(connection: FeedConnection): void {
    const principal = connection.principal;
    if (!principal) return;
    const users = this.tenants.get(principal.tenantId);
    const connections = users?.get(principal.userId);
    if (!connections?.delete(connection)) return;
    this.size--;
    if (connections.size === 0) users?.delete(principal.userId);
    if (users?.size === 0) this.tenants.delete(principal.tenantId);
  }

  deliver(envelope: Envelope): void {
    const users = this.tenants.get(envelope.tenantId);
    if (!users) return;
    const targets =
      envelope.userId === null
        ? [...users.values()].flatMap((set) => [...set])
        : [...(users.get(envelope.userId) ?? [])];
    if (targets.length === 0) return;
    const message = outMessage('update', envelope.item);
    const text = JSON.stringify(message);
    // One connection's failure closes that connection, not the delivery to the others.
    for (const connection of targets) {
      connection.run('delivery', () => connection.deliver(envelope.item, false, text, message));
    }
    if (envelope.item.kind === 'event') this.enforce(envelope.item.event.type, envelope.item.event.data, targets);
  }

  /** What an event means for open connections: a revoked session or key closes those opened with it. */
  private enforce(type: string, data: Record<string, unknown>, targets: FeedConnection[]): void {
    if (
      type !== 'session.revoked' &&
      type !== 'api_key.revoked' &&
      type !== 'user.updated' &&
      type !== 'user.deleted'
    ) {
      return;
    }
    // Another instance's revocation: this instance's cached credentials must not outlive it.
    this.deps.caches.auth.clear();
    for (const connection of targets) {
      connection.run('revocation', () => this.enforceOn(connection, type, data));
    }
  }

  private enforceOn(connection: FeedConnection, type: string, data: Record<string, unknown>): unknown {
    const principal = connection.principal;
    if (!principal) return;
    if (type === 'session.revoked' && principal.sessionId !== null && principal.sessionId === data.session_id) {
      connection.close(CLOSE.unauthorized, 'session_revoked');
    } else if (type === 'api_key.revoked' && principal.apiKeyId !== null && principal.apiKeyId === data.api_key_id) {
      connection.close(CLOSE.unauthorized, 'api_key_revoked');
    } else if (type === 'user.deleted') {
      connection.close(CLOSE.unauthorized, 'user_deleted');
    } else if (type === 'user.updated') {
      return connection.revalidate();
    }
  }

  /** Every connection, closed with 1001 (the instance is shutting down; clients reconnect elsewhere). */
  close(): void {
    this.unlisten();
    clearInterval(this.revalidation);
    for (const users of this.tenants.values()) {
      for (const connections of users.values()) {
        for (const connection of connections) {
          connection.run('shutdown', () => connection.close(CLOSE.shuttingDown, 'server_shutting_down'));
        }
      }
    }
  }
}
