// Lambent's pages: plain JavaScript modules over the JSON API, loaded by every page as one module script (the
// Content-Security-Policy allows scripts from this origin only; modules are deferred, so the page is parsed).
//
// Layout (`js/`):
// - `dom.js`: building elements (API data always as text), dates, moving the focus.
// - `api.js`: the API client: requests, network errors, 401s and error bodies, once for every page.
// - `sse.js`: reading an event stream into frames, a bad frame reported as one.
// - `auth.js`: login, logout and who is logged in.
// - `resources.js`, `editor.js`, `dashboard.js`: the dashboard's collections, its editor dialog, its lists.
// - `conversation.js`, `playground.js`: the playground's bubbles and tool cards, and the chat itself.
// - `usage.js`: the usage page's charts (Chart.js, vendored), budget state and (staff) budgets and limits.
import { boot } from "./js/auth.js";
import { dashboard } from "./js/dashboard.js";
import { playground } from "./js/playground.js";
import { usage } from "./js/usage.js";

boot({ dashboard, playground, usage });
