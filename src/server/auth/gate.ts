/**
 * The auth gate: who a request's caller is, and whether it may do what it asks — the edge half of
 * etcd's auth (the other half is the state machine's guard, which checks every client command
 * again where it is applied, src/engines/auth/guard.ts).
 *
 * The caller of a request, as etcd finds it:
 *  - auth off: anonymous (a token sent anyway is ignored, as etcd ignores it);
 *  - a `token` in the call's metadata: a simple token this member knows, or a JWT whose signature
 *    and expiry hold — else `invalid auth token`;
 *  - no token, `--client-cert-auth` on and a verified client certificate: the certificate's CN is
 *    the user (etcd's rule; the user must exist for any permission to apply);
 *  - else no user: every permission check then answers `user name is empty`.
 * A simple token's caller is checked at the current auth revision; a JWT's at the revision it was
 * issued at, so a JWT stops working (`revision of auth store is old`) after any auth change.
 *
 * This member's auth state may lag a change another member has already answered (an AuthDisable,
 * a grant, the Authenticate that registered a simple token). So the gate refuses only from a
 * state as new as the cluster's: a refusal is given after `catchUp` (a ReadIndex of the shard
 * that holds the auth state) and a second look. An allowed caller is not made to wait: a write is
 * checked again where it applies and a linearizable read after its ReadIndex; what neither covers
 * (admin calls such as Snapshot, Hash or Defragment, a serializable read) is answered from this
 * member's state, as etcd answers it.
 */
import type * as grpc from '@grpc/grpc-js';
import { forwardedCallerOf } from '../forwarding.js';
import { type AuthEngine, type Caller, type CommandAccess, EngineError, type KeyAccess, accessRefusal, anonymousCaller } from '../../engines/index.js';
import { DkvError, dkvError } from '../../errors.js';
import { tokenBytesMax } from './limits.js';
import type { SimpleTokens } from './tokens.js';

/** What the gate needs of a JWT provider (src/server/auth/jwt.ts). */
export interface JwtVerifier {
  verify(token: string, nowMs: number): { user: string; authRevision: number } | undefined;
}

/** What a service call exposes to the gate: its metadata and, on TLS, the peer's certificate. */
export interface CallCredentials {
  readonly metadata: grpc.Metadata;
  getAuthContext?(): { sslPeerCertificate?: { subject?: { CN?: string | string[] } } } | undefined;
}

export interface AuthGateOptions {
  /** The auth engine of the default store's shard, now (a snapshot install replaces it). */
  readonly auth: () => AuthEngine;
  readonly simpleTokens: SimpleTokens;
  readonly jwt?: JwtVerifier;
  /** --client-cert-auth: a verified client certificate's CN names the user when no token is sent. */
  readonly clientCertAuth: boolean;
  readonly nowMs: () => number;
  /** Resolves once this member has applied every auth change committed before the call (a ReadIndex). */
  readonly catchUp: () => Promise<unknown>;
}

/** The auth state while auth is off (a check made then needs no repeat until auth is on). */
export const AUTH_OFF = -1;
/** The auth state of a check not made yet: unequal to every state, so the first recheck checks. */
export const AUTH_UNCHECKED = Number.NaN;

export class AuthGate {
  constructor(private readonly options: AuthGateOptions) {}

  get enabled(): boolean {
    return this.options.auth().enabled;
  }

  get revision(): number {
    return this.options.auth().revision;
  }

  /** The auth state a check is made at: the auth revision, or AUTH_OFF while auth is off. */
  get state(): number {
    const auth = this.options.auth();
    return auth.enabled ? auth.revision : AUTH_OFF;
  }

  /**
   * A long call's re-check (Watch, the dkv.v1 prefix watch, Observe): whether its caller, found
   * again from the call's token, still has `keys`, checked only when the auth state has moved
   * since `checkedAt`. Answers the state now checked at, or the refusal (a token that stopped
   * working, a permission revoked).
   */
  recheck(call: CallCredentials, checkedAt: number, keys: () => readonly KeyAccess[]): { checkedAt: number; refusal?: unknown } {
    const now = this.state;
    if (now === checkedAt || now === AUTH_OFF) return { checkedAt: now };
    try {
      this.checkKeys(this.caller(call), keys());
    } catch (refusal) {
      return { checkedAt, refusal };
    }
    return { checkedAt: now };
  }

  /** The caller of a call (throws `invalid-auth-token` for a token that names nobody). */
  caller(call: CallCredentials): Caller {
    const auth = this.options.auth();
    if (!auth.enabled) return anonymousCaller;
    // A call another member forwarded: its caller is the one that member authenticated (the
    // token was checked there; simple tokens live on the member that issued them).
    const forwarded = forwardedCallerOf(call);
    if (forwarded !== undefined) {
      return forwarded.authRevision < 0 ? { user: forwarded.user, authRevision: auth.revision, again: () => this.caller(call) } : { user: forwarded.user, authRevision: forwarded.authRevision };
    }
    const values = call.metadata.get('token');
    const token = values.length === 0 ? undefined : String(values[0]);
    if (token !== undefined) return this.tokenCaller(token, auth, call);
    const cn = this.options.clientCertAuth ? certificateCommonName(call) : undefined;
    // Not the shared anonymousCaller (that one means auth off): the runtime never drops this one.
    return cn === undefined ? { user: '', authRevision: 0 } : { user: cn, authRevision: auth.revision, again: () => this.caller(call) };
  }

  private tokenCaller(token: string, auth: AuthEngine, call: CallCredentials): Caller {
    if (token.length === 0 || token.length > tokenBytesMax) throw dkvError('invalid-auth-token');
    const now = this.options.nowMs();
    const user = this.options.simpleTokens.use(token, now);
    if (user !== undefined) return { user, authRevision: auth.revision, again: () => this.caller(call) };
    const claims = this.options.jwt?.verify(token, now);
    if (claims === undefined) throw dkvError('invalid-auth-token');
    return { user: claims.user, authRevision: claims.authRevision };
  }

  /** Throws unless `caller` may read and write what `keys` say (nothing while auth is off). */
  checkKeys(caller: Caller, keys: readonly KeyAccess[]): void {
    this.check(caller, { admin: false, keys });
  }

  /** Throws unless `caller` is root (anyone while auth is off): etcd's admin calls. */
  checkAdmin(caller: Caller): void {
    this.check(caller, { admin: true });
  }

  check(caller: Caller, access: CommandAccess): void {
    const refusal = accessRefusal(this.options.auth(), caller, access);
    if (refusal !== undefined) throw refusal;
  }

  /**
   * The call's caller, permitted `access` (when given): a refusal — of the access, or of the token
   * — is answered only once this member has caught up with the cluster's auth state.
   */
  async permitted(call: CallCredentials, access?: () => CommandAccess): Promise<Caller> {
    // Found again (Caller.again, for a command refused for an old auth revision), the caller is
    // held to the same access as here, not only to what the guard checks where it applies.
    const look = (): Caller => {
      const caller = this.caller(call);
      if (access !== undefined && this.enabled) this.check(caller, access());
      return caller.again === undefined ? caller : { ...caller, again: look };
    };
    try {
      return look();
    } catch (error) {
      if (!isRefusal(error)) throw error;
      await this.caughtUp();
      return look();
    }
  }

  /** Resolves once this member has applied every auth change committed before now (a ReadIndex). */
  caughtUp(): Promise<unknown> {
    return this.options.catchUp();
  }

  /** The call's caller, who must be root (a refusal only once caught up, as `permitted`). */
  admin(call: CallCredentials): Promise<Caller> {
    return this.permitted(call, () => ADMIN_ACCESS);
  }
}

const ADMIN_ACCESS: CommandAccess = { admin: true };

/** A refusal a lagging auth state may give (a missing permission or user, a token unknown here). */
function isRefusal(error: unknown): boolean {
  return error instanceof EngineError || error instanceof DkvError;
}

function certificateCommonName(call: CallCredentials): string | undefined {
  const cn = call.getAuthContext?.()?.sslPeerCertificate?.subject?.CN;
  const name = Array.isArray(cn) ? cn[0] : cn;
  return name === undefined || name === '' ? undefined : name;
}
