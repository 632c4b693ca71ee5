// Swagger UI on our own OpenAPI document (kept out of the page: the CSP forbids inline script). A user signed
// in on the site (app.js keeps the token in localStorage) is authorized already; the note above says which.
// A block of its own, so that its names stay out of the global scope Swagger UI's bundle shares.
{
  const TOKEN_KEY = "lambent.token";

  /** The signed-in user, or null: the stored token is checked, as it may have expired or been revoked. */
  async function signedIn(token) {
    if (!token) return null;
    try {
      const response = await fetch("/api/auth/me/", { headers: { authorization: `Bearer ${token}` } });
      return response.ok ? await response.json() : null;
    } catch {
      return null;
    }
  }

  /** Puts the note's parts into the page, all as text: "text", ["code"], { strong }, { href, text }. */
  function say(note, ...parts) {
    note.replaceChildren(...parts.map((part) => {
      if (typeof part === "string") return document.createTextNode(part);
      if (part.strong) return Object.assign(document.createElement("strong"), { textContent: part.strong });
      if (part.href) return Object.assign(document.createElement("a"), { href: part.href, textContent: part.text });
      return Object.assign(document.createElement("code"), { textContent: part[0] });
    }));
  }

  window.addEventListener("DOMContentLoaded", () => {
    const token = localStorage.getItem(TOKEN_KEY);
    const user = signedIn(token);
    const ui = window.SwaggerUIBundle({
      url: "/api/openapi.json", dom_id: "#swagger-ui", deepLinking: true, persistAuthorization: true,
      onComplete: async () => {
        const me = await user;
        if (me) ui.preauthorizeApiKey("bearer", token);
        const note = document.getElementById("authorize-note");
        if (!note) return;
        if (me) {
          say(note, `You are signed in as ${me.username}: Swagger UI is authorized with your session's token, so `,
            { strong: "Try it out" }, " just works (press ", { strong: "Authorize" }, " to use another token).");
        } else {
          say(note, { href: "/dashboard/", text: "Log in on the dashboard" }, " (then come back), or ", ["POST /api/auth/login/"],
            " with your username and password, then press ", { strong: "Authorize" }, " and paste the token: it is sent as ",
            ["Authorization: Bearer <token>"], ".");
        }
      },
    });
  });
}
