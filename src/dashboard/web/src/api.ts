// Talking to tidald: the JSON API under /ui/api/ and its server-sent event
// stream. The token is sent as `Authorization: Bearer`; tidald's API decides
// what it allows (the page only hides buttons the API would refuse).

const TOKEN_KEY = "tidal-token";

class ApiError extends Error {
  constructor(public status: number, public code: string, message: string) {
    super(message);
  }
}

function token(): string {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function setToken(t: string): void {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function authHeaders(): Record<string, string> {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

async function apiGet<T>(path: string): Promise<T> {
  // A call boot.js started before this script loaded, taken once.
  const early = (window as any).tidalEarly as Record<string, Promise<Response>> | undefined;
  const started = early && early[path];
  if (started) {
    delete early[path];
    return decode<T>(await started);
  }
  const res = await fetch("api/" + path, { headers: authHeaders() });
  return decode<T>(res);
}

async function apiPost<T>(path: string, body: unknown): Promise<T> {
  const res = await fetch("api/" + path, {
    method: "POST",
    headers: Object.assign({ "Content-Type": "application/json" }, authHeaders()),
    body: JSON.stringify(body),
  });
  return decode<T>(res);
}

async function apiText(path: string): Promise<string> {
  const res = await fetch("api/" + path, { headers: authHeaders() });
  if (!res.ok) await decode<unknown>(res);
  return res.text();
}

async function decode<T>(res: Response): Promise<T> {
  const text = await res.text();
  let body: any = {};
  try {
    body = text ? JSON.parse(text) : {};
  } catch (e) {
    throw new ApiError(res.status, "ERROR", text);
  }
  if (!res.ok) {
    throw new ApiError(res.status, body.code || "ERROR", body.error || res.statusText);
  }
  return body as T;
}

// A server-sent event stream read with fetch (so that the token travels in a
// header, never in a URL). `onEvent` gets each event; the stream reconnects
// (after 2 s) when it ends, until closed.
class EventStream {
  private controller: AbortController | null = null;
  private closed = false;
  private retry = 0;

  constructor(private path: () => string,
              private onEvent: (event: string, data: any) => void,
              private onError: (message: string) => void) {}

  open(): void {
    this.closed = false;
    void this.run();
  }

  close(): void {
    this.closed = true;
    if (this.controller) this.controller.abort();
    if (this.retry) window.clearTimeout(this.retry);
  }

  private async run(): Promise<void> {
    this.controller = new AbortController();
    try {
      const res = await fetch("api/" + this.path(), {
        headers: authHeaders(),
        signal: this.controller.signal,
      });
      if (!res.ok || !res.body) {
        await decode<unknown>(res);
        return;
      }
      const reader = res.body.getReader();
      const utf8 = new TextDecoder();
      let buffered = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += utf8.decode(value, { stream: true });
        let end: number;
        while ((end = buffered.indexOf("\n\n")) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          let event = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) this.onEvent(event, JSON.parse(data));
        }
      }
    } catch (e) {
      if (this.closed) return;
      if (e instanceof ApiError) {
        this.onError(e.message);
        if (e.status === 401 || e.status === 403) return;
      }
    }
    if (!this.closed) {
      this.retry = window.setTimeout(() => { if (!this.closed) void this.run(); }, 2000);
    }
  }
}

// int64 fields come as strings in proto JSON.
function num(v: unknown): number {
  if (v === undefined || v === null || v === "") return 0;
  return Number(v);
}

function esc(s: unknown): string {
  return String(s === undefined || s === null ? "" : s)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

function fmt(v: number): string {
  if (!isFinite(v)) return "-";
  if (v === 0) return "0";
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2).replace(/\.?0+$/, "");
}

function timeOf(unix: number): string {
  const d = new Date(unix * 1000);
  return d.toTimeString().slice(0, 8);
}

function ago(ts: string | undefined): string {
  if (!ts) return "";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return s + "s";
  if (s < 7200) return Math.round(s / 60) + "m";
  if (s < 172800) return Math.round(s / 3600) + "h";
  return Math.round(s / 86400) + "d";
}
