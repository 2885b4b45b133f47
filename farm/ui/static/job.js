// One job's page: its event stream (the API's /v1/jobs/{id}/events, authorized by the session cookie)
// moves the progress bar, the counts and the state, and appends to the timeline, without a reload.
"use strict";
(function () {
  const root = document.getElementById("job");
  if (!root || root.dataset.terminal === "true") return;
  const url = "/v1/jobs/" + encodeURIComponent(root.dataset.job) + "/events?after=" + encodeURIComponent(root.dataset.after);
  const source = new EventSource(url);
  const list = document.getElementById("events");
  function counts(c) {
    if (!c || c.total === undefined) return;
    const done = c.succeeded + c.failed;
    const bar = document.getElementById("job-progress");
    bar.max = c.total || 1;
    bar.value = done;
    bar.textContent = done + "/" + c.total;
    document.getElementById("job-counts").textContent = done + "/" + c.total;
    document.getElementById("job-succeeded").textContent = c.succeeded;
    document.getElementById("job-failed").textContent = c.failed;
  }
  function append(ev) {
    const li = document.createElement("li");
    const strong = document.createElement("strong");
    strong.textContent = ev.type;
    const rest = Object.assign({}, ev);
    delete rest.seq; delete rest.type; delete rest.at;
    li.append(new Date(ev.at).toLocaleTimeString() + " ", strong, " " + JSON.stringify(rest));
    list.append(li);
  }
  function handle(message) {
    const ev = JSON.parse(message.data);
    append(ev);
    if (ev.type === "progress") counts(ev);
    if (ev.type === "state") {
      const state = document.getElementById("job-state");
      state.textContent = ev.state;
      state.className = "state state-" + ev.state;
      counts(ev.counts);
      if (["succeeded", "failed", "cancelled"].includes(ev.state)) {
        source.close();
        const cancel = document.getElementById("cancel-form");
        if (cancel) cancel.hidden = true; // nothing left to cancel; a reload offers retry
      }
    }
  }
  // EventSource delivers named events only to listeners of that name: every type the farm writes
  for (const type of ["state", "progress", "error", "runner", "batch", "part", "step", "timings", "message"]) {
    source.addEventListener(type, handle);
  }
})();
