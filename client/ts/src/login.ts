// The login service's HTTP JSON API (docs/protocol.md §1).

/** Where to connect: a gate's node name and addresses. */
export interface GateInfo {
  node: string;
  /** host:port of the gate's TCP listener (not usable from a browser). */
  tcp?: string;
  /** ws:// or wss:// URL of the gate's WebSocket endpoint. */
  ws?: string;
}

/** A successful register or login: a ticket for one gate, valid 30s, usable once. */
export interface LoginResponse {
  player_id: number;
  ticket: string;
  expires_at: string;
  gate: GateInfo;
}

/**
 * An error answer from the login service. `code` is one of bad_request,
 * bad_credentials, name_taken, rate_limited, no_gate, internal, or
 * http_error / network_error when the answer was not the API's.
 */
export class LoginError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Seconds to wait before retrying (rate_limited). */
    readonly retryAfter?: number,
  ) {
    super(`login: ${code} (HTTP ${status}): ${message}`);
    this.name = "LoginError";
  }
}

/**
 * The login service. `url` is its base URL, e.g. "https://login.example.com";
 * "" (the default) means the page's own origin, as when the page is served
 * by `citadel -web`.
 */
export class LoginAPI {
  constructor(
    readonly url = "",
    private readonly fetchFn: typeof fetch = (...args) => fetch(...args),
  ) {}

  /** Creates an account and logs it in. Names: 3–24 of [a-zA-Z0-9_-]; passwords 8–72 bytes. */
  register(name: string, password: string): Promise<LoginResponse> {
    return this.post("/v1/register", name, password);
  }

  /** Checks the password and returns a ticket and the gate to use it at. */
  login(name: string, password: string): Promise<LoginResponse> {
    return this.post("/v1/login", name, password);
  }

  private async post(path: string, name: string, password: string): Promise<LoginResponse> {
    let resp: Response;
    try {
      resp = await this.fetchFn(this.url.replace(/\/$/, "") + path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name, password }),
      });
    } catch (err) {
      throw new LoginError(0, "network_error", `cannot reach the login service at ${this.url || "this origin"}: ${String(err)}`);
    }
    const text = await resp.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (!resp.ok) {
      const e = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
      const retry = Number(resp.headers.get("Retry-After")) || undefined;
      if (!e?.code) throw new LoginError(resp.status, "http_error", text.trim().slice(0, 200), retry);
      throw new LoginError(resp.status, e.code, e.message ?? "", retry);
    }
    const lr = body as LoginResponse | undefined;
    if (!lr || typeof lr.ticket !== "string" || typeof lr.gate?.node !== "string") {
      throw new LoginError(resp.status, "http_error", `not a login response: ${text.trim().slice(0, 200)}`);
    }
    return lr;
  }
}
