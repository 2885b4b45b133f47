// Upload with a progress bar: XHR (fetch reports no upload progress) to the dashboard's upload route,
// which checks the session's CSRF token from the X-CSRF-Token header and streams into the store.
"use strict";
(function () {
  const box = document.getElementById("upload");
  if (!box) return;
  const form = document.getElementById("upload-form");
  const input = document.getElementById("upload-file");
  const bar = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");
  function send(file) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", box.dataset.url);
      xhr.setRequestHeader("X-CSRF-Token", box.dataset.csrf);
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total); };
      xhr.onload = () => resolve({ ok: xhr.status < 300, status: xhr.status, text: xhr.responseText });
      xhr.onerror = () => resolve({ ok: false, status: 0, text: "network error" });
      const body = new FormData();
      body.append("file", file, file.name);
      xhr.send(body);
    });
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const files = Array.from(input.files);
    if (!files.length) return;
    for (const file of files) {
      bar.value = 0;
      status.textContent = "Uploading " + file.name + "…";
      const r = await send(file);
      if (!r.ok) {
        let why = r.text;
        try { why = JSON.parse(r.text).error; } catch (err) { /* plain text */ }
        status.textContent = "Upload of " + file.name + " failed (" + r.status + "): " + why;
        return;
      }
    }
    bar.value = 100;
    status.textContent = "Uploaded " + files.length + " file(s).";
    window.location.reload();
  });
})();
