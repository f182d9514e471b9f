// Vigie's pages: what needs a script, and nothing else (the pages work without it, less fresh).
// - An element with `data-live="SECONDS"` and an id is fetched again every SECONDS and
//   replaced, unless a form field has the focus or the page is hidden; a session that ended
//   sends the page to the sign-in page.
// - A form with `data-confirm="QUESTION"` is sent only once the question is answered yes.
"use strict";
(function () {
  function busy() {
    const active = document.activeElement;
    return document.hidden || (active && active.closest && active.closest("form") !== null);
  }

  async function refresh(seconds) {
    if (!busy()) {
      try {
        const response = await fetch(window.location.href, {
          credentials: "same-origin",
          headers: { Accept: "text/html" },
        });
        if (response.redirected && new URL(response.url).pathname === "/sign-in") {
          window.location.reload();
          return;
        }
        if (response.ok) {
          const page = new DOMParser().parseFromString(await response.text(), "text/html");
          for (const fresh of page.querySelectorAll("[data-live][id]")) {
            const old = document.getElementById(fresh.id);
            if (old) {
              old.replaceWith(document.importNode(fresh, true));
            }
          }
          document.documentElement.dataset.refreshed = new Date().toISOString();
        }
      } catch (e) {
        // The service is away: the page stays as it was and the next round tries again.
      }
    }
    window.setTimeout(() => refresh(seconds), seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const live = document.querySelector("[data-live]");
    if (live) {
      const seconds = Math.max(1, Number(live.dataset.live) || 10);
      window.setTimeout(() => refresh(seconds), seconds * 1000);
    }
    document.addEventListener("submit", (event) => {
      const question = event.target.dataset && event.target.dataset.confirm;
      if (question && !window.confirm(question)) {
        event.preventDefault();
      }
    });
  });
})();
