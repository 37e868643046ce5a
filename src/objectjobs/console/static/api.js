// The MAPI client: token grant and refresh, the CSRF cookie, JSON POSTs.
// The console is an ordinary client of the public API (SPEC §2.1, §2.2); it has no
// private endpoints.

const REALM = "vsp-object";
const CLIENT_ID = "vsp-object-external-client";
const STORE_KEY = "objectjobs.session";

// Relative to the console's own URL, so the console also works behind a path prefix.
const ROOT = new URL("../", document.baseURI);
const url = (path) => new URL(path, ROOT).toString();

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || "";
  }
}

function readCookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    // not JSON (a proxy's HTML page, say): fall through to the status line
  }
  if (body && typeof body.code === "string") {
    return new ApiError(response.status, body.code, body.message || "", body.details);
  }
  if (body && typeof body.error === "string") {
    // the token endpoint answers in OAuth's shape
    return new ApiError(response.status, body.error, body.error_description || body.error, "");
  }
  return new ApiError(response.status, `HTTP ${response.status}`, response.statusText || "request failed", "");
}

export class Session {
  constructor({ onExpired }) {
    this.onExpired = onExpired; // called once the session cannot be recovered (401)
    this.state = null; // {access, refresh, accessExp, refreshExp} (epoch ms)
    this.refreshTimer = null;
    this.refreshing = null;
    this.load();
  }

  get signedIn() {
    return this.state !== null && this.state.refreshExp > Date.now();
  }

  load() {
    try {
      const raw = sessionStorage.getItem(STORE_KEY);
      this.state = raw ? JSON.parse(raw) : null;
    } catch (_) {
      this.state = null;
    }
    if (this.state) this.schedule();
  }

  save(answer) {
    const now = Date.now();
    this.state = {
      access: answer.access_token,
      refresh: answer.refresh_token,
      accessExp: now + answer.expires_in * 1000,
      refreshExp: now + (answer.refresh_expires_in || answer.expires_in) * 1000,
    };
    // sessionStorage: survives a reload of this tab, never shared with other tabs or kept
    // after the browser closes
    sessionStorage.setItem(STORE_KEY, JSON.stringify(this.state));
    this.schedule();
  }

  clear() {
    this.state = null;
    sessionStorage.removeItem(STORE_KEY);
    clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
  }

  schedule() {
    clearTimeout(this.refreshTimer);
    if (!this.state) return;
    const lifetime = this.state.accessExp - Date.now();
    // renew ahead of expiry: 20% of the lifetime, at most 30 s, at least 1 s early
    const lead = Math.min(30000, Math.max(1000, lifetime * 0.2));
    const wait = Math.max(0, lifetime - lead);
    this.refreshTimer = setTimeout(() => {
      this.refresh().catch((err) => {
        if (err instanceof ApiError && (err.status === 400 || err.status === 401)) {
          this.expire(err);
        } else {
          // the server may be restarting: try again shortly, the access token may still work
          this.refreshTimer = setTimeout(() => this.schedule(), 5000);
        }
      });
    }, wait);
  }

  expire(err) {
    // the caller's error handling leaves this one to the sign-in screen's message
    if (err) err.sessionEnded = true;
    this.clear();
    this.onExpired(err);
  }

  async ensureCsrf(force = false) {
    if (!force && readCookie("XSRF-TOKEN")) return;
    const response = await fetch(url("mapi/v1/csrf"), { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) throw await errorFrom(response);
  }

  async grant(fields) {
    const body = new URLSearchParams({ client_id: CLIENT_ID, ...fields });
    const response = await fetch(url(`ui/auth/realms/${REALM}/protocol/openid-connect/token`), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
      body,
    });
    if (!response.ok) throw await errorFrom(response);
    this.save(await response.json());
  }

  async signIn(username, password) {
    await this.ensureCsrf(true);
    await this.grant({ grant_type: "password", username, password });
  }

  refresh() {
    // one refresh at a time: concurrent callers share it
    if (!this.refreshing) {
      if (!this.state) return Promise.reject(new ApiError(401, "Unauthorized", "not signed in", ""));
      this.refreshing = this.grant({ grant_type: "refresh_token", refresh_token: this.state.refresh })
        .finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  async post(path, body = {}, retried = false) {
    if (!this.state) throw new ApiError(401, "Unauthorized", "not signed in", "");
    if (this.state.accessExp - Date.now() < 2000) await this.refresh();
    await this.ensureCsrf();
    const response = await fetch(url(`mapi/v1/${path}`), {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        Authorization: `Bearer ${this.state.access}`,
        "X-XSRF-TOKEN": readCookie("XSRF-TOKEN") || "",
      },
      body: JSON.stringify(body),
    });
    if (response.ok) return response.json();
    const err = await errorFrom(response);
    if (err.status === 401) {
      if (!retried) {
        // an expired CSRF cookie or access token is recoverable without the password
        try {
          await this.ensureCsrf(true);
          await this.refresh();
        } catch (refreshErr) {
          if (refreshErr instanceof ApiError && refreshErr.status < 500) {
            this.expire(err);
          }
          throw err;
        }
        return this.post(path, body, true);
      }
      this.expire(err);
    }
    throw err;
  }
}
