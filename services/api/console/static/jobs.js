// Live updates on /jobs: the API's event stream (read with the session cookie) changes a
// row's badge as its job moves, and adds a row for a job that is new on this page.
(function () {
  "use strict";
  const live = document.getElementById("live");
  const table = document.querySelector("#jobs tbody");
  const display = {ACCEPTED: "Queued", INITIALIZING: "Queued", VALIDATING: "Queued", QUEUED: "Queued",
                   RUNNING: "Running", DONE: "Completed", ERROR: "Failed", CANCELLED: "Cancelled"};
  const final = new Set(["Completed", "Failed", "Cancelled"]);
  const filtered = new URLSearchParams(window.location.search);

  function setStatus(row, status) {
    const badge = row.querySelector("[data-status]");
    if (!badge || badge.textContent === status) return;
    badge.textContent = status;
    badge.className = "badge badge-" + status.toLowerCase();
    if (final.has(status)) {
      const cancel = row.querySelector("form[data-cancel]");
      if (cancel) cancel.remove();
    }
  }

  async function refresh(jobId) {
    const answer = await fetch("/v1/jobs/" + encodeURIComponent(jobId), {credentials: "same-origin"});
    if (!answer.ok) return;
    const job = await answer.json();
    let row = table.querySelector('tr[data-job="' + CSS.escape(jobId) + '"]');
    if (!row) {
      if (filtered.toString()) return;  // a filtered page shows only what the filter chose
      const empty = table.querySelector("tr.empty");
      if (empty) empty.remove();
      row = document.createElement("tr");
      row.dataset.job = job.id;
      const cells = [
        '<a href="/jobs/' + encodeURIComponent(job.id) + '"></a>',
        '<span data-status></span>', "", "", "", "",
        '<a href="/jobs/' + encodeURIComponent(job.id) + '">Details</a>',
      ];
      row.innerHTML = cells.map((c) => "<td>" + c + "</td>").join("");
      row.children[0].firstChild.textContent = job.id.slice(0, 12);
      row.children[2].textContent = job.backend;
      row.children[3].textContent = job.primitive || "";
      row.children[4].textContent = job.tags.join(", ");  // without the tags this system adds
      row.children[5].textContent = job.created_at.replace("T", " ").slice(0, 19);
      row.children[6].className = "actions";
      table.prepend(row);
    }
    setStatus(row, job.status);
  }

  if (!window.EventSource) { live.textContent = "Live updates: not supported by this browser."; return; }
  const source = new EventSource("/v1/jobs/events");
  source.onopen = () => { live.textContent = "Live updates: on"; };
  source.onerror = () => { live.textContent = "Live updates: reconnecting…"; };
  const onEvent = (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch (e) { return; }
    const jobId = event.job_id;
    if (!jobId) return;
    const row = table.querySelector('tr[data-job="' + CSS.escape(jobId) + '"]');
    if (row && event.status && display[event.status]) setStatus(row, display[event.status]);
    refresh(jobId);
  };
  // The stream names each event by its type (job.status, job.result, …).
  for (const type of ["job.accepted", "job.submitted", "job.status", "job.result",
                      "job.cancelled", "job.failed"]) {
    source.addEventListener(type, onEvent);
  }
  source.onmessage = onEvent;
})();
