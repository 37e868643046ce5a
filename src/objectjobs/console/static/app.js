// The console's entry point: sign-in, routing (#/jobs, #/jobs/<id>), error banner,
// live refresh, and the create/cancel dialogs.

import { ApiError, Session } from "./api.js";
import { $, el } from "./format.js";
import { JobView } from "./job.js";
import { JobsView } from "./jobs.js";

const REFRESH_MS = 2000;

// Accepted jobParams keys per type (SPEC §3.2), offered as suggestions; the server decides.
const COMMON_KEYS = ["prefix", "dryRun", "maxFailurePercent", "objectsPerSecond"];
const TYPE_KEYS = {
  BATCH_REPLICATE: ["replicationFilter", "target", "targetBucket"],
  LIFECYCLE_UPDATE: ["policy", "asOf"],
  METRIC_RECONCILIATION: ["fix"],
  TRIGGER_RECONCILIATION: ["modifiedAfter", "modifiedBefore", "force"],
};

class App {
  constructor() {
    this.api = new Session({ onExpired: (err) => this.signedOut(err) });
    this.jobs = new JobsView(this);
    this.job = new JobView(this);
    this.view = null;
    this.timer = null;
    this.user = null;
    this.canCancel = false;

    $("signin-form").addEventListener("submit", (e) => this.signIn(e));
    $("sign-out").addEventListener("click", () => this.signOut());
    $("banner-close").addEventListener("click", () => this.clearError());
    $("live").addEventListener("change", () => this.schedule());
    $("new-job").addEventListener("click", () => this.openCreate());
    window.addEventListener("hashchange", () => this.route());
    document.addEventListener("visibilitychange", () => this.schedule());
    this.setupCreate();
  }

  async start() {
    if (this.api.signedIn) {
      try {
        await this.loadIdentity();
      } catch (err) {
        this.showError(err);
        if (!this.api.signedIn) return;
      }
      this.route();
    } else {
      this.api.clear();
      this.showSignIn();
    }
  }

  // --- sign-in / sign-out ------------------------------------------------------------------

  showSignIn(message) {
    this.stop();
    this.show("view-signin");
    $("who").hidden = true;
    $("sign-out").hidden = true;
    if (message) this.showError(message);
    $("signin-username").focus();
  }

  async signIn(event) {
    event.preventDefault();
    const button = $("signin-submit");
    button.disabled = true;
    try {
      await this.api.signIn($("signin-username").value, $("signin-password").value);
      $("signin-password").value = "";
      this.clearError();
      await this.loadIdentity();
      if (!location.hash || location.hash === "#/signin") location.hash = "#/jobs";
      else this.route();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        this.showError(new ApiError(401, "Sign-in failed", "Wrong username or password.", err.message));
      } else {
        this.showError(err);
      }
    } finally {
      button.disabled = false;
    }
  }

  async loadIdentity() {
    const [info, serial] = await Promise.all([
      this.api.post("user/info"),
      this.api.post("serial_number/get").catch(() => null),
    ]);
    this.user = info;
    const who = $("who");
    who.textContent = info.displayName;
    who.title = `User id ${info.userId.id}\n${info.roles.join("\n")}`;
    who.hidden = false;
    $("sign-out").hidden = false;
    $("serial").textContent = serial ? `S/N ${serial.value}` : "";
    // controls the user's roles cannot use are hidden; the server still decides every call
    $("new-job").hidden = !info.roles.includes("mapi:jobs:create");
    this.canCancel = info.roles.includes("mapi:jobs:cancel") || info.roles.includes("mapi:jobs:admin_cancel");
  }

  signOut() {
    this.api.clear();
    this.user = null;
    this.clearError();
    this.showSignIn();
  }

  signedOut(err) {
    this.user = null;
    this.showSignIn();
    this.showError(new ApiError(401, "Signed out", "Your session has ended; please sign in again.",
      err ? err.message : ""));
  }

  // --- routing and live refresh --------------------------------------------------------------

  navigate(hash) {
    if (location.hash === hash) this.route();
    else location.hash = hash;
  }

  route() {
    if (!this.api.signedIn) {
      this.showSignIn();
      return;
    }
    const hash = location.hash.replace(/^#/, "") || "/jobs";
    const [path, queryText] = hash.split("?");
    const match = path.match(/^\/jobs\/(-?\d+)$/);
    let promise;
    if (match) {
      this.view = this.job;
      this.show("view-job");
      promise = this.job.show(Number(match[1]));
    } else {
      this.view = this.jobs;
      this.show("view-jobs");
      promise = this.jobs.show(new URLSearchParams(queryText || ""));
    }
    promise.catch((err) => this.showError(err));
    this.schedule();
  }

  show(id) {
    for (const view of ["view-signin", "view-jobs", "view-job"]) $(view).hidden = view !== id;
  }

  schedule() {
    this.stop();
    if (!this.view || !$("live").checked || document.hidden) return;
    this.timer = setInterval(() => {
      if (!this.api.signedIn) return;
      this.view.tick().catch((err) => this.showError(err));
    }, REFRESH_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  // --- errors and notices --------------------------------------------------------------------

  showError(err, target = null) {
    if (err && err.sessionEnded) return; // the sign-in screen already says so
    const banner = target || $("banner");
    const code = err instanceof ApiError ? err.code : "Error";
    const message = err instanceof ApiError ? err.message
      : (err instanceof TypeError ? "The server cannot be reached." : String(err.message || err));
    const details = err instanceof ApiError ? err.details : (err instanceof TypeError ? err.message : "");
    if (target) {
      target.replaceChildren(el("div", {}, el("strong", { text: code }), " ", message,
        details ? el("div", { class: "banner-details", text: details }) : null));
    } else {
      $("banner-code").textContent = code;
      $("banner-message").textContent = message;
      $("banner-details").textContent = details || "";
    }
    banner.hidden = false;
  }

  clearError() {
    $("banner").hidden = true;
  }

  notify(text) {
    const notice = $("notice");
    notice.textContent = text;
    notice.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => { notice.hidden = true; }, 5000);
  }

  // --- cancel --------------------------------------------------------------------------------

  async cancelJob(job) {
    const dialog = $("cancel-dialog");
    const id = job.jobId.id;
    $("cancel-title").textContent = `Cancel job ${id}?`;
    $("cancel-text").textContent =
      `${job.jobType} on bucket ${job.bucketName} stops within about a second; what it did stays recorded.`;
    dialog.returnValue = "";
    dialog.showModal();
    const choice = await new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true });
    });
    if (choice !== "cancel") return;
    try {
      const answer = await this.api.post("jobs/cancel", { jobId: { id } });
      this.notify(`Job ${id} is ${answer.status.jobState}.`);
      await this.view.refresh(false);
    } catch (err) {
      this.showError(err);
    }
  }

  // --- create --------------------------------------------------------------------------------

  setupCreate() {
    $("create-type").addEventListener("change", () => this.updateParamKeys());
    $("param-add").addEventListener("click", () => this.addParamRow());
    $("create-close").addEventListener("click", () => $("create-dialog").close());
    $("create-form").addEventListener("submit", (e) => this.createJob(e));
    this.updateParamKeys();
  }

  updateParamKeys() {
    const keys = [...COMMON_KEYS, ...TYPE_KEYS[$("create-type").value]];
    $("param-keys").replaceChildren(...keys.map((k) => el("option", { value: k })));
    $("param-hint").textContent = `Accepted: ${keys.join(", ")}. Values are strings.`;
  }

  addParamRow(key = "", value = "") {
    const index = $("param-rows").children.length + 1;
    const row = el("div", { class: "param-row" },
      el("input", { class: "param-key", list: "param-keys", value: key, placeholder: "key",
        "aria-label": `Parameter ${index} key`, autocomplete: "off" }),
      el("span", { "aria-hidden": "true", text: "=" }),
      el("input", { class: "param-value", value, placeholder: "value",
        "aria-label": `Parameter ${index} value`, autocomplete: "off" }));
    row.append(el("button", { type: "button", class: "ghost", "aria-label": `Remove parameter ${index}`,
      text: "×", onclick: () => row.remove() }));
    $("param-rows").append(row);
    row.querySelector(".param-key").focus();
  }

  openCreate() {
    $("create-error").hidden = true;
    if (this.jobs.filters.bucket && !$("create-bucket").value) {
      $("create-bucket").value = this.jobs.filters.bucket;
    }
    $("create-dialog").showModal();
    $("create-type").focus();
  }

  async createJob(event) {
    event.preventDefault();
    const jobParams = {};
    for (const row of $("param-rows").children) {
      const key = row.querySelector(".param-key").value.trim();
      const value = row.querySelector(".param-value").value;
      if (!key) continue;
      if (key in jobParams) {
        this.showError(new ApiError(0, "InvalidRequest", `Parameter ${key} is given twice.`, ""), $("create-error"));
        return;
      }
      jobParams[key] = value;
    }
    const body = { jobType: $("create-type").value, bucketName: $("create-bucket").value.trim(), jobParams };
    const button = $("create-submit");
    button.disabled = true;
    try {
      const answer = await this.api.post("jobs/create", body);
      const id = answer.jobStatus.jobId.id;
      $("create-dialog").close();
      $("param-rows").replaceChildren();
      this.notify(`Job ${id} created.`);
      if (this.view === this.jobs) {
        this.jobs.tokens = [null];
        await this.jobs.refresh();
      }
    } catch (err) {
      this.showError(err, $("create-error"));
    } finally {
      button.disabled = false;
    }
  }
}

new App().start();
