// The jobs list: one small JSON request a second for the states and counts of the rows on the page
// (never one EventSource per row: a browser holds at most six connections per origin).
"use strict";
(function () {
  const rows = Array.from(document.querySelectorAll("tr[data-job]"));
  if (!rows.length) return;
  const terminal = new Set(["succeeded", "failed", "cancelled"]);
  function active() {
    return rows.filter((r) => !terminal.has(r.querySelector('[data-field="state"]').textContent.trim()));
  }
  async function tick() {
    const open = active();
    if (!open.length) return;
    const ids = open.map((r) => r.dataset.job).join(",");
    try {
      const res = await fetch("/ui/jobs/live.json?ids=" + encodeURIComponent(ids), { credentials: "same-origin" });
      if (res.ok) {
        const live = await res.json();
        for (const row of open) {
          const j = live[row.dataset.job];
          if (!j) continue;
          const state = row.querySelector('[data-field="state"]');
          state.textContent = j.state;
          state.className = "state state-" + j.state;
          const done = j.succeeded + j.failed;
          row.querySelector('[data-field="done"]').textContent = done + "/" + j.total;
          row.querySelector('[data-field="failed"]').textContent = j.failed;
          const bar = row.querySelector("progress");
          bar.max = j.total || 1;
          bar.value = done;
        }
      }
    } catch (e) { /* the next tick tries again */ }
    setTimeout(tick, 1000);
  }
  setTimeout(tick, 1000);
})();
