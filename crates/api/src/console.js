// Vigie's pages: what needs a script, and nothing else (the pages work without it, less fresh).
// - An element with `data-live="SECONDS"` and an id is fetched again every SECONDS (from its
//   `data-live-src`, the page's own address: after a refused form the address is the form's
//   route) and replaced, unless a form field has the focus or the page is hidden; the
//   `<details>` open in it stay open; a session that ended sends the page to the sign-in page.
// - A form with `data-confirm="QUESTION"` is sent only once the question is answered yes.
"use strict";
(function () {
  function busy() {
    const active = document.activeElement;
    return document.hidden || (active && active.closest && active.closest("form") !== null);
  }

  async function refresh(seconds, source) {
    if (!busy()) {
      try {
        const response = await fetch(source, {
          credentials: "same-origin",
          headers: { Accept: "text/html" },
        });
        if (response.redirected && new URL(response.url).pathname === "/sign-in") {
          window.location.assign(source);
          return;
        }
        if (response.ok) {
          const page = new DOMParser().parseFromString(await response.text(), "text/html");
          for (const fresh of page.querySelectorAll("[data-live][id]")) {
            const old = document.getElementById(fresh.id);
            if (old) {
              const open = [...old.querySelectorAll("details[open][id]")].map((d) => d.id);
              old.replaceWith(document.importNode(fresh, true));
              for (const id of open) {
                const details = document.getElementById(id);
                if (details) {
                  details.open = true;
                }
              }
            }
          }
          document.documentElement.dataset.refreshed = new Date().toISOString();
        }
      } catch (e) {
        // The service is away: the page stays as it was and the next round tries again.
      }
    }
    window.setTimeout(() => refresh(seconds, source), seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const live = document.querySelector("[data-live]");
    if (live) {
      const seconds = Math.max(1, Number(live.dataset.live) || 10);
      const source = live.dataset.liveSrc || window.location.pathname;
      window.setTimeout(() => refresh(seconds, source), seconds * 1000);
    }
    document.addEventListener("submit", (event) => {
      const question = event.target.dataset && event.target.dataset.confirm;
      if (question && !window.confirm(question)) {
        event.preventDefault();
      }
    });
  });
})();
