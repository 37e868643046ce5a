// One job: the describe document and its failed objects.

import {
  $, bytes, duration, el, isActive, num, progressBar, stateBadge, table, time,
} from "./format.js";

const FAILED_PAGE = 50;
const USAGE_ROWS = [
  ["currentObjects", "Current objects", num],
  ["currentBytes", "Current bytes", bytes],
  ["noncurrentVersions", "Noncurrent versions", num],
  ["noncurrentBytes", "Noncurrent bytes", bytes],
  ["deleteMarkers", "Delete markers", num],
  ["multipartUploads", "Multipart uploads", num],
  ["multipartParts", "Multipart parts", num],
  ["multipartBytes", "Multipart bytes", bytes],
];

function facts(target, pairs) {
  target.replaceChildren(...pairs.flatMap(([name, value]) => [
    el("dt", { text: name }),
    el("dd", {}, value),
  ]));
}

function signed(format, n) {
  if (n === null || n === undefined) return "–";
  return n > 0 ? `+${format(n)}` : format(n);
}

export class JobView {
  constructor(app) {
    this.app = app;
    this.jobId = null;
    this.job = null;
    this.failedTokens = [null];
    this.failedNext = null;
    this.busy = false;
    this.wasActive = false;
    this.failedGeneration = 0;
    this.sample = null; // {at, done, rate}: the observed rate, when the server reports none

    $("job-cancel").addEventListener("click", () => {
      if (this.job) this.app.cancelJob(this.job.job);
    });
    $("failed-next").addEventListener("click", () => this.failedPage(+1));
    $("failed-prev").addEventListener("click", () => this.failedPage(-1));
    $("failed-reload").addEventListener("click", () => this.loadFailed().catch((e) => this.app.showError(e)));
  }

  async show(jobId) {
    if (jobId !== this.jobId) {
      this.jobId = jobId;
      this.job = null;
      this.sample = null;
      this.failedTokens = [null];
      $("job-title").textContent = `Job ${jobId}`;
      for (const id of ["job-state", "job-progress", "job-summary", "job-counts", "job-plan", "failed-body"]) {
        $(id).replaceChildren();
      }
    }
    await this.refresh(true);
  }

  // Live refresh only while the job runs; a finished job's document no longer changes.
  tick() {
    if (this.job && !isActive(this.job.job)) return Promise.resolve();
    return this.refresh(false);
  }

  async refresh(withFailed) {
    if (this.busy || this.jobId === null) return;
    this.busy = true;
    try {
      const answer = await this.app.api.post("jobs/describe", { jobId: { id: this.jobId } });
      this.job = answer;
      this.render(answer);
      const active = isActive(answer.job);
      // failures appear while the job runs: refresh them with it, and once more at its end
      if (withFailed || active || this.wasActive) await this.loadFailed();
      this.wasActive = active;
      $("job-updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
      this.app.clearError();
    } finally {
      this.busy = false;
    }
  }

  render(d) {
    const job = d.job;
    const stats = job.jobStats;
    const active = isActive(job);
    $("job-state").replaceChildren(stateBadge(job.jobState));
    $("job-cancel").hidden = !active || !this.app.canCancel;
    const total = d.totals ? d.totals.objects : null;
    $("job-progress").replaceChildren(progressBar({
      done: stats.processed + stats.failed,
      total,
      failed: stats.failed,
      state: job.jobState,
      label: `Progress of job ${job.jobId.id}`,
    }));

    const done = stats.processed + stats.failed;
    const [rate, eta] = this.rateAndEta(d, done, total, active);
    const params = Object.entries(job.jobParams);
    facts($("job-summary"), [
      ["Type", job.jobType],
      ["Bucket", job.bucketName],
      ["Owner", `${d.owner.name} (${d.owner.id})`],
      ["Created", time(d.createTime)],
      ["Started", time(job.startTime)],
      ["Completed", time(job.completeTime)],
      ["Parameters", params.length
        ? el("ul", { class: "params" }, params.map(([k, v]) =>
          el("li", {}, el("code", { text: k }), "=", el("code", { text: v }))))
        : el("span", { class: "muted", text: "none" })],
    ]);
    facts($("job-counts"), [
      ["Total objects", d.totals ? num(d.totals.objects) : el("span", { class: "muted", text: "examining…" })],
      ["Total bytes", d.totals ? bytes(d.totals.bytes) : "–"],
      ["Processed", num(stats.processed)],
      ["Succeeded", num(d.progress.succeeded)],
      ["Skipped", num(d.progress.skipped)],
      ["Failed", el("span", { class: stats.failed ? "failed-count" : null, text: num(d.progress.failed) })],
      ["Bytes done", bytes(d.progress.bytes)],
      ["Rate", rate],
      ["ETA", eta],
    ]);

    const plan = d.plan ? Object.entries(d.plan) : [];
    $("job-plan").replaceChildren(plan.length
      ? table(["Action", "Objects", "Bytes"],
        plan.map(([action, amount]) => [action, num(amount.objects), bytes(amount.bytes)]),
        { numeric: [1, 2] })
      : el("p", { class: "muted", text: d.plan ? "Nothing to do." : "Known when PROCESSING ends." }));

    $("job-failures-reasons").hidden = d.failureReasons.length === 0;
    $("job-reasons").replaceChildren(...d.failureReasons.map((r) => el("li", { text: r })));
    this.renderUsage(d.usage);
  }

  // The server's rate and ETA when it gives them; otherwise measured here from successive
  // refreshes (smoothed), and labelled as such.
  rateAndEta(d, done, total, active) {
    if (!active) return [d.objectsPerSecond > 0 ? `${d.objectsPerSecond.toFixed(1)} objects/s` : "–", "–"];
    if (d.objectsPerSecond > 0) {
      return [`${d.objectsPerSecond.toFixed(1)} objects/s`, duration(d.etaSeconds)];
    }
    const now = performance.now();
    const last = this.sample;
    let rate = last ? last.rate : null;
    if (last && now - last.at >= 1000 && done >= last.done) {
      const measured = (1000 * (done - last.done)) / (now - last.at);
      rate = rate === null ? measured : 0.6 * rate + 0.4 * measured;
      this.sample = { at: now, done, rate };
    } else if (!last) {
      this.sample = { at: now, done, rate: null };
    }
    if (rate === null) return ["measuring…", "–"];
    const eta = total !== null && rate > 0 ? duration(Math.max(total - done, 0) / rate) : "–";
    return [`${rate.toFixed(1)} objects/s (observed)`, eta === "–" ? eta : `${eta} (estimated)`];
  }

  renderUsage(usage) {
    $("job-usage-card").hidden = !usage;
    if (!usage) return;
    const before = usage.before;
    const rows = USAGE_ROWS.map(([key, label, format]) => [
      label,
      before ? format(before[key]) : "–",
      format(usage.after[key]),
      signed(format, usage.delta[key]),
    ]);
    const classes = new Set([
      ...Object.keys(usage.after.byStorageClass || {}),
      ...Object.keys((before && before.byStorageClass) || {}),
    ]);
    for (const name of [...classes].sort()) {
      const b = before && before.byStorageClass ? before.byStorageClass[name] : null;
      const a = (usage.after.byStorageClass || {})[name];
      const dl = (usage.delta.byStorageClass || {})[name];
      rows.push([
        `${name} objects / bytes`,
        b ? `${num(b.objects)} / ${bytes(b.bytes)}` : "–",
        a ? `${num(a.objects)} / ${bytes(a.bytes)}` : "–",
        dl ? `${signed(num, dl.objects)} / ${signed(bytes, dl.bytes)}` : "–",
      ]);
    }
    const parts = [table(["", "Before", "After", "Delta"], rows, { numeric: [1, 2, 3] })];
    if (!before) parts.unshift(el("p", { class: "muted", text: "No usage was recorded before this job." }));
    $("job-usage").replaceChildren(...parts);
  }

  async failedPage(step) {
    if (step > 0 && this.failedNext) this.failedTokens.push(this.failedNext);
    else if (step < 0 && this.failedTokens.length > 1) this.failedTokens.pop();
    else return;
    try {
      await this.loadFailed();
    } catch (err) {
      this.app.showError(err);
    }
  }

  async loadFailed() {
    const generation = ++this.failedGeneration;
    const token = this.failedTokens[this.failedTokens.length - 1];
    const body = { jobId: { id: this.jobId }, outcome: "FAILED", pageSize: FAILED_PAGE };
    if (token) body.pageToken = token;
    const answer = await this.app.api.post("jobs/report", body);
    if (generation !== this.failedGeneration) return; // a newer page was asked for meanwhile
    this.failedNext = answer.pageToken;
    $("failed-body").replaceChildren(...answer.results.map((r) => el("tr", {},
      el("td", { class: "mono key", text: r.key }),
      el("td", { class: "mono small", text: r.versionId || "–" }),
      el("td", { text: r.action }),
      el("td", { class: "mono small", text: r.errorCode || "–" }),
      el("td", { text: r.message || "" }))));
    $("failed-empty").hidden = answer.results.length > 0;
    $("failed-prev").disabled = this.failedTokens.length <= 1;
    $("failed-next").disabled = !this.failedNext;
    $("failed-page").textContent = `Page ${this.failedTokens.length}`;
  }
}
