// The jobs list: filters, keyset paging, live progress, cancel.

import { $, el, isActive, num, progressBar, stateBadge, time } from "./format.js";

const DESCRIBE_LIMIT = 50; // describes per refresh at most; the rest show jobStats only

export class JobsView {
  constructor(app) {
    this.app = app;
    this.filters = { bucket: "", state: "", size: 25 };
    this.tokens = [null]; // page tokens of the pages visited; the last is the current one
    this.nextToken = null;
    this.totals = new Map(); // job id -> totals.objects, kept once known (it never changes)
    this.rows = new Map(); // job id -> {signature, row}
    this.busy = false;
    this.generation = 0;

    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      this.app.navigate(this.hashFor({
        bucket: $("filter-bucket").value.trim(),
        state: $("filter-state").value,
        size: Number($("page-size").value),
      }));
    });
    $("filter-state").addEventListener("change", () => $("filters").requestSubmit());
    $("page-size").addEventListener("change", () => $("filters").requestSubmit());
    $("jobs-next").addEventListener("click", () => this.page(+1));
    $("jobs-prev").addEventListener("click", () => this.page(-1));
  }

  hashFor({ bucket, state, size }) {
    const query = new URLSearchParams();
    if (bucket) query.set("bucket", bucket);
    if (state) query.set("state", state);
    if (size && size !== 25) query.set("size", String(size));
    const text = query.toString();
    return `#/jobs${text ? `?${text}` : ""}`;
  }

  // Route entry: the filters live in the hash, so a filtered view can be bookmarked.
  async show(query) {
    const size = Math.min(Math.max(parseInt(query.get("size") || "25", 10) || 25, 1), 1000);
    const filters = { bucket: query.get("bucket") || "", state: query.get("state") || "", size };
    const changed = JSON.stringify(filters) !== JSON.stringify(this.filters);
    this.filters = filters;
    $("filter-bucket").value = filters.bucket;
    $("filter-state").value = filters.state;
    const sizeSelect = $("page-size");
    if (![...sizeSelect.options].some((o) => o.value === String(size))) {
      sizeSelect.append(el("option", { text: String(size) }));
    }
    sizeSelect.value = String(size);
    if (changed) this.tokens = [null];
    await this.refresh();
  }

  async page(step) {
    if (step > 0 && this.nextToken) this.tokens.push(this.nextToken);
    else if (step < 0 && this.tokens.length > 1) this.tokens.pop();
    else return;
    await this.refresh();
    $("jobs-body").closest(".table-wrap").scrollTop = 0;
  }

  // A live tick is skipped while a load is in flight; a load the operator asked for (paging,
  // filters) always runs, and an older answer arriving after it is dropped.
  tick() {
    return this.busy ? Promise.resolve() : this.refresh();
  }

  async refresh() {
    const generation = ++this.generation;
    this.busy = true;
    try {
      const body = { pageSize: this.filters.size };
      if (this.filters.bucket) body.bucketName = this.filters.bucket;
      const token = this.tokens[this.tokens.length - 1];
      if (token) body.pageToken = token;
      let answer;
      try {
        answer = await this.app.api.post("jobs/list", body);
      } catch (err) {
        if (err.code === "InvalidRequest" && token) {
          // a page token the server no longer accepts (its secret key changed): start over
          this.tokens = [null];
        }
        throw err;
      }
      if (generation !== this.generation) return;
      const jobs = answer.jobs.filter((job) => this.matchesState(job));
      await this.describeActive(jobs);
      if (generation !== this.generation) return;
      this.nextToken = answer.pageToken;
      this.render(jobs, answer.jobs.length);
      $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
      this.app.clearError();
    } finally {
      if (generation === this.generation) this.busy = false;
    }
  }

  matchesState(job) {
    const wanted = this.filters.state;
    if (!wanted) return true;
    if (wanted === "ACTIVE") return isActive(job);
    return job.jobState === wanted;
  }

  // describe is per job: only the active jobs shown, and only until their totals are known
  async describeActive(jobs) {
    const wanted = jobs
      .filter((job) => isActive(job) && !this.totals.has(job.jobId.id))
      .slice(0, DESCRIBE_LIMIT);
    const answers = await Promise.allSettled(
      wanted.map((job) => this.app.api.post("jobs/describe", { jobId: job.jobId })));
    answers.forEach((result, i) => {
      if (result.status === "fulfilled" && result.value.totals) {
        this.totals.set(wanted[i].jobId.id, result.value.totals.objects);
      }
    });
  }

  render(jobs, pageRows) {
    const body = $("jobs-body");
    const wanted = jobs.map((job) => this.rowFor(job));
    const same = wanted.length === body.children.length
      && wanted.every((row, i) => body.children[i] === row);
    if (!same) body.replaceChildren(...wanted);
    const seen = new Set(jobs.map((job) => job.jobId.id));
    for (const id of this.rows.keys()) if (!seen.has(id)) this.rows.delete(id);

    const empty = $("jobs-empty");
    empty.hidden = jobs.length > 0;
    empty.textContent = pageRows > 0 && jobs.length === 0
      ? `No ${this.filters.state === "ACTIVE" ? "active" : this.filters.state} jobs on this page.`
      : "No jobs.";
    $("jobs-prev").disabled = this.tokens.length <= 1;
    $("jobs-next").disabled = !this.nextToken;
    const shown = this.filters.state ? `${jobs.length} of ${pageRows}` : `${pageRows}`;
    $("jobs-page").textContent = `Page ${this.tokens.length} · ${shown} job${pageRows === 1 ? "" : "s"}`;
  }

  // Rows are reused while nothing in them changed, so live refresh keeps focus and
  // selection on a row the operator is working with.
  rowFor(job) {
    const id = job.jobId.id;
    const total = this.totals.has(id) ? this.totals.get(id) : null;
    const signature = JSON.stringify([job, total, this.app.canCancel]);
    const cached = this.rows.get(id);
    if (cached && cached.signature === signature) return cached.row;

    const stats = job.jobStats;
    const row = el("tr", { "data-job-id": id, "data-state": job.jobState },
      el("td", {}, el("a", { href: `#/jobs/${id}`, class: "mono", text: String(id) })),
      el("td", { class: "small", text: job.jobType }),
      el("td", {}, job.bucketName,
        job.jobParams.prefix ? el("span", { class: "muted", text: ` / ${job.jobParams.prefix}` }) : null),
      el("td", {}, stateBadge(job.jobState),
        job.jobParams.dryRun === "true" ? el("span", { class: "tag", text: "dry run" }) : null),
      el("td", {}, progressBar({
        done: stats.processed + stats.failed,
        total,
        failed: stats.failed,
        state: job.jobState,
        label: `Progress of job ${id}`,
      })),
      el("td", { class: "small" }, time(job.startTime)),
      el("td", { class: "small" }, time(job.completeTime)),
      el("td", { class: "actions" }, isActive(job) && this.app.canCancel
        ? el("button", {
          type: "button",
          class: "danger small-button",
          "aria-label": `Cancel job ${id}`,
          onclick: () => this.app.cancelJob(job),
          text: "Cancel",
        })
        : null));
    if (stats.failed) row.title = `${num(stats.failed)} objects failed`;
    this.rows.set(id, { signature, row });
    return row;
  }
}
