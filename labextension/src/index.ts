/**
 * deepgrade's grading panel: each of the student's submissions with its grading state, kept
 * current by polling its own Jupyter server (hub/exchange/lab_api.py), every 3 s while a
 * grading is queued or running. A finished grading shows its score and, per exercise, its
 * checks: what happened, measured, expected (when the check may show it) and what to try.
 *
 * Everything shown comes from the student's own work or from the grader, so it is set as
 * text (textContent), never as HTML.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

const BUSY_POLL_MS = 3000; // while a grading is queued or running
const IDLE_POLL_MS = 10000; // otherwise: a new submission shows within seconds all the same
const MAX_SHOWN = 10; // newest submissions listed

const gradingIcon = new LabIcon({
  name: 'deepgrade:grading',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<path d="M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm-1.5 14.5-4-4 1.4-1.4 2.6 2.6 5.6-5.6 1.4 1.4-7 7z"/></g></svg>'
});

interface Job {
  job: number;
  state: 'queued' | 'grading' | 'graded' | 'failed';
  score: number | null;
  max_score: number | null;
  message: string;
  status: string;
}

interface Submission {
  id: number;
  course_id: string;
  assignment_id: string;
  timestamp: string;
  feedback: string[];
  grading: Job | null;
}

interface Check {
  id: string;
  title: string; // as the feedback page names it: the docstring's first line, else the name in words
  description: string;
  passed: boolean;
  points: number;
  score: number;
  message: string;
  measured: unknown;
  expected: unknown;
  hint: string;
}

interface Exercise {
  exercise: string;
  title: string; // the heading above the exercise in the notebook
  score: number;
  points: number;
  checks: Check[];
}

interface Result {
  id: number;
  status: string;
  score: number | null;
  max_score: number | null;
  message: string;
  exercises: Exercise[];
  feedback: string[];
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function shown(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function isEmpty(value: unknown): boolean {
  return value === null || value === undefined || value === '';
}

function busy(s: Submission): boolean {
  return !!s.grading && (s.grading.state === 'queued' || s.grading.state === 'grading');
}

function finishedKey(s: Submission): string | null {
  return s.grading && !busy(s) ? `${s.id}:${s.grading.job}` : null;
}

class GradingPanel extends Widget {
  private readonly settings = ServerConnection.makeSettings();
  private readonly results = new Map<string, Result>();
  private readonly list = element('div', 'dg-list');
  private seen: Set<number> | null = null;
  private timer = 0;

  constructor(private readonly reveal: () => void) {
    super();
    this.id = 'deepgrade-grading';
    this.addClass('dg-GradingPanel');
    this.title.icon = gradingIcon;
    this.title.caption = 'Grading: your submissions and their checks';
    this.node.append(element('h2', 'dg-title', 'Your submissions'), this.list);
    this.list.append(element('p', 'dg-empty', 'Loading…'));
    void this.poll();
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    super.dispose();
  }

  private url(...parts: string[]): string {
    return URLExt.join(this.settings.baseUrl, 'deepgrade', ...parts.map(encodeURIComponent));
  }

  private async getJson<T>(url: string): Promise<T> {
    const response = await ServerConnection.makeRequest(url, {}, this.settings);
    if (!response.ok) {
      throw new Error(`${response.status} ${response.statusText}`);
    }
    return (await response.json()) as T;
  }

  private async poll(): Promise<void> {
    let delay = IDLE_POLL_MS;
    try {
      const all = await this.getJson<Submission[]>(this.url('submissions'));
      const newest = all
        .slice()
        .sort((a, b) => b.timestamp.localeCompare(a.timestamp) || b.id - a.id)
        .slice(0, MAX_SHOWN);
      await Promise.all(newest.map(s => this.fetchResult(s)));
      this.render(newest);
      const fresh = this.seen !== null && newest.some(s => !this.seen!.has(s.id));
      this.seen = new Set(all.map(s => s.id));
      if (fresh) {
        this.reveal(); // a new submission: show the student where its grading goes
      }
      if (newest.some(busy)) {
        delay = BUSY_POLL_MS;
      }
    } catch (error) {
      this.list.replaceChildren(element('p', 'dg-empty', `Submissions cannot be listed now (${error}).`));
    }
    if (!this.isDisposed) {
      this.timer = window.setTimeout(() => void this.poll(), delay);
    }
  }

  private async fetchResult(s: Submission): Promise<void> {
    const key = finishedKey(s);
    if (key && !this.results.has(key)) {
      const url = this.url('courses', s.course_id, 'submissions', String(s.id), 'result');
      this.results.set(key, await this.getJson<Result>(url));
    }
  }

  private render(submissions: Submission[]): void {
    if (!submissions.length) {
      this.list.replaceChildren(element('p', 'dg-empty', 'Nothing submitted yet. Submit from the Assignment List.'));
      return;
    }
    const open = new Set(
      Array.from(this.list.querySelectorAll('details[open]')).map(d => (d as HTMLElement).dataset.submission)
    );
    this.list.replaceChildren(
      ...submissions.map((s, index) =>
        this.renderSubmission(s, index === 0 || open.has(String(s.id)))
      )
    );
  }

  private renderSubmission(s: Submission, open: boolean): HTMLElement {
    const box = element('details', 'dg-submission');
    box.dataset.submission = String(s.id);
    box.open = open;
    const summary = element('summary', '');
    const state = s.grading ? s.grading.state : 'queued';
    const badge = element('span', 'dg-state', s.grading ? s.grading.status : 'not queued');
    badge.dataset.state = state;
    const when = new Date(s.timestamp).toLocaleString(undefined, { hour12: false });
    summary.append(
      element('span', 'dg-assignment', `${s.course_id} / ${s.assignment_id}`),
      element('span', 'dg-time', when),
      badge
    );
    box.append(summary);
    const key = finishedKey(s);
    const result = key ? this.results.get(key) : undefined;
    if (result) {
      this.renderResult(box, s, result);
    } else if (busy(s)) {
      box.append(element('p', 'dg-message', 'Your checks appear here when grading ends.'));
    }
    return box;
  }

  private renderResult(box: HTMLElement, s: Submission, result: Result): void {
    if (result.score !== null && result.max_score !== null) {
      box.append(element('p', 'dg-score', `Score: ${result.score} / ${result.max_score}`));
    }
    if (result.message) {
      box.append(element('p', 'dg-message', result.message));
    }
    for (const exercise of result.exercises) {
      box.append(
        element('div', 'dg-exercise', `${exercise.title}: ${exercise.score} / ${exercise.points}`)
      );
      for (const check of exercise.checks) {
        box.append(this.renderCheck(check));
      }
    }
    for (const notebook of result.feedback) {
      const link = element('a', 'dg-open', 'Open the full feedback page');
      link.href = this.url('courses', s.course_id, 'submissions', String(s.id), 'feedback', notebook);
      link.target = '_blank';
      link.rel = 'noopener noreferrer';
      box.append(link);
    }
  }

  private renderCheck(check: Check): HTMLElement {
    const row = element('div', 'dg-check');
    row.dataset.passed = String(check.passed);
    const name = check.title || check.id;
    row.append(element('div', 'dg-check-name', `${check.passed ? '✓' : '✗'} ${name} (${check.score} / ${check.points})`));
    if (check.passed) {
      return row;
    }
    const details: [string, unknown][] = [
      ['', check.message],
      ['measured: ', check.measured],
      ['expected: ', check.expected],
      ['what to try: ', check.hint]
    ];
    for (const [label, value] of details) {
      if (!isEmpty(value)) {
        const line = element('div', 'dg-detail');
        line.append(element('span', 'dg-label', label), document.createTextNode(shown(value)));
        row.append(line);
      }
    }
    return row;
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@deepgrade/lab:grading',
  description: 'Each submission’s grading, live, with its checks',
  autoStart: true,
  activate: (app: JupyterFrontEnd) => {
    const panel: GradingPanel = new GradingPanel(() => app.shell.activateById(panel.id));
    app.shell.add(panel, 'left', { rank: 950 });
    app.commands.addCommand('deepgrade:open-grading', {
      label: 'Show my submissions and their grading',
      execute: () => app.shell.activateById(panel.id)
    });
  }
};

export default plugin;
