// The page: sign-in with a token, then the views by the address's fragment
// (#/ the apps, #/apps/NS/NAME one app).

let current: View | null = null;

function showError(message: string): void {
  const el = document.getElementById("error");
  if (!el) return;
  el.textContent = message;
  el.hidden = !message;
}

function signIn(reason: string): void {
  if (current) current.close();
  current = null;
  const main = document.getElementById("main")!;
  main.innerHTML = `<form id="signin" class="signin"><h1>Sign in</h1>
    <p>Paste a Tidal token (<code>tidalctl auth create-token NAME -n NS --role viewer</code>).
    It stays in this tab only.</p>
    <input id="token" type="password" autocomplete="off" placeholder="tidal_..." aria-label="token">
    <button type="submit">Sign in</button><p id="signin-error" class="bad">${esc(reason)}</p></form>`;
  const form = document.getElementById("signin") as HTMLFormElement;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const t = (document.getElementById("token") as HTMLInputElement).value.trim();
    setToken(t);
    if (!t) sessionStorage.setItem(TOKEN_KEY + "-none", "1");
    try {
      await whoami();
      route();
    } catch (e) {
      setToken("");
      document.getElementById("signin-error")!.textContent = (e as Error).message;
    }
  });
}

async function whoami(): Promise<void> {
  const me = await apiGet<any>("whoami");
  const roles = (me.bindings || []).map((b: any) => `${b.role} in ${b.namespace === "*" ? "every namespace" : b.namespace}`);
  document.getElementById("who")!.textContent = me.name ? `${me.name} (${roles.join(", ")})` : "";
}

function route(): void {
  if (current) current.close();
  showError("");
  const main = document.getElementById("main")!;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  let view: ListView | AppView;
  if (parts[0] === "apps" && parts.length >= 3) view = new AppView(main, parts[1], parts[2]);
  else view = new ListView(main);
  current = view;
  view.show().catch((e) => {
    if (e instanceof ApiError && e.status === 401) signIn(e.message);
    else showError((e as Error).message);
  });
}

async function start(): Promise<void> {
  document.getElementById("signout")!.addEventListener("click", () => {
    setToken("");
    sessionStorage.removeItem(TOKEN_KEY + "-none");
    document.getElementById("who")!.textContent = "";
    signIn("");
  });
  window.addEventListener("hashchange", route);
  // Without a token, ask for one (an empty one is fine with --auth=none).
  if (!token() && !sessionStorage.getItem(TOKEN_KEY + "-none")) { signIn(""); return; }
  // Who the token is and the view load side by side (a 401 from either
  // asks for a token again).
  route();
  try {
    await whoami();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) { signIn(token() ? e.message : ""); return; }
    showError((e as Error).message);
  }
}

document.addEventListener("DOMContentLoaded", () => void start());
