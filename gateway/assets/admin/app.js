// Bourse saga explorer: the operators' page of the gateway (served at /admin/).
//
// Plain DOM, no framework. Every string from the server goes into the page
// through text nodes and attributes (createElement, textContent,
// setAttribute), never through innerHTML. Every call goes to the same origin.
'use strict';

(() => {
  const SESSION_KEY = 'bourse.admin.session';
  /** Lanes in the order a saga usually flows; others follow, by name. */
  const LANE_ORDER = ['gateway', 'order-service', 'payment-service', 'matching-service', 'chain-service', 'notify-service'];
  const EVENTS_PER_PAGE = 25;
  const STATUS_HINTS = {
    401: 'log in again',
    403: 'not an administrator',
    503: 'a database or the broker is unreachable',
  };
  const CODE_HINTS = {
    saga_not_found: 'check the id: an order, user, withdrawal or trigger id',
    replay_refused: 'tick "force" only once you know it was never applied',
    reason_required: 'type why the message may be dropped',
  };
  const STANDING_LABELS = {
    applied: '✓ applied',
    parked: '✗ parked',
    retrying: '↻ retrying',
    published: '… published, not applied',
    broadcast: '⇉ broadcast',
    waiting: '⧗ in outbox',
  };
  const STANDING_TITLES = {
    applied: 'a consumer applied it',
    parked: 'parked in a dead-letter queue',
    retrying: 'a consumer failed it: it waits in a retry tier for its next attempt',
    published: 'published; no consumer recorded it yet: on its way, or older than the inbox window',
    broadcast: 'for readers that keep no inbox (the live feed, the event log): no consumer applies it',
    waiting: 'written to an outbox, not in the event log yet',
  };

  const state = {
    saga: null,       // the saga on screen (or being loaded)
    traceSeq: 0,      // the latest trace request; older answers are dropped
    expanded: new Set(),  // empty queues opened by hand
    collapsed: new Set(), // queues with letters closed by hand
    events: { page: 1, pages: 1 },
  };

  const byId = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  // ---------------------------------------------------------------- DOM

  /** An element; `attrs` are attributes (null/undefined/false skipped), `on` its listeners. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'on') Object.entries(value).forEach(([event, fn]) => node.addEventListener(event, fn));
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  /** A table with a header row and body rows (each a `tr`). */
  function table(headers, rows, className = 'grid-table') {
    return el('table', { class: className },
      el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows));
  }

  const muted = (...text) => el('span', { class: 'muted' }, ...text);
  const code = (id) => el('code', { title: id || null }, shortId(id));

  /** Puts `node` in a grid cell (CSSOM, so no inline style attribute). */
  function place(node, row, column) {
    node.style.gridRow = String(row);
    node.style.gridColumn = String(column + 1);
    return node;
  }

  function groupBy(items, key) {
    const groups = new Map();
    for (const item of items) {
      const k = key(item);
      if (k === null || k === undefined) continue;
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(item);
    }
    return groups;
  }

  // ---------------------------------------------------------------- formatting

  function parseTime(iso) {
    const t = iso ? Date.parse(iso) : NaN;
    return Number.isNaN(t) ? null : t;
  }

  /** `2024-05-01 12:34:56.789` (UTC). */
  function fullTime(iso) {
    const t = parseTime(iso);
    return t === null ? (iso || '—') : new Date(t).toISOString().replace('T', ' ').replace('Z', '');
  }

  /** `12:34:56.789` (UTC). */
  const clockTime = (iso) => (parseTime(iso) === null ? fullTime(iso) : fullTime(iso).slice(11));

  function duration(ms) {
    const v = Math.max(0, ms);
    if (v < 1000) return `${Math.round(v)} ms`;
    const s = v / 1000;
    if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m % 60} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  /** `+1.20 s` from `from` to `to`, or '' when either is unknown. */
  function delta(from, to) {
    const a = parseTime(from);
    const b = parseTime(to);
    return a === null || b === null ? '' : `+${duration(b - a)}`;
  }

  function ago(iso) {
    const t = parseTime(iso);
    return t === null ? '—' : `${duration(Date.now() - t)} ago`;
  }

  function shortId(id) {
    return id ? String(id).slice(0, 8) : '—';
  }

  /** `from -> to` (`null` for the first state), '' without a transition. */
  function transitionText(t) {
    return t ? `${t.from ?? 'null'} -> ${t.to}` : '';
  }

  function timeEl(iso, text) {
    return el('time', { datetime: iso || null, title: iso ? `${fullTime(iso)} UTC` : null }, text ?? fullTime(iso));
  }

  const prettyJson = (value) => JSON.stringify(value, null, 2);

  /** A queue's service: queues are named `<service>.<what>` (`.dlq` for the parked copy). */
  const serviceOfQueue = (queue) => String(queue).split('.')[0];

  // ---------------------------------------------------------------- session

  const session = {
    read() {
      try {
        return JSON.parse(sessionStorage.getItem(SESSION_KEY));
      } catch {
        return null;
      }
    },
    token() {
      const s = this.read();
      return s && s.token && s.expiresAt > Date.now() ? s.token : null;
    },
    email() {
      return this.read()?.email || '';
    },
    save(token, email) {
      const expiresAt = Date.now() + Number(token.expires_in || 0) * 1000;
      sessionStorage.setItem(SESSION_KEY, JSON.stringify({ token: token.access_token, email, expiresAt }));
    },
    clear() {
      sessionStorage.removeItem(SESSION_KEY);
    },
  };

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function readJson(response) {
    const text = await response.text();
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  /**
   * Calls the gateway; answers the JSON body. Errors become an ApiError with
   * the server's `{error: {code, message}}`. `accept` lists error statuses
   * whose body is an answer (readiness answers 503 with its checks).
   */
  async function api(method, path, { body, accept = [] } = {}) {
    const headers = { Accept: 'application/json' };
    const token = session.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(null, 'network', `the gateway did not answer (${e.message})`);
    }
    const data = await readJson(response);
    if (response.ok || accept.includes(response.status)) return data;
    const detail = data && data.error;
    throw new ApiError(
      response.status,
      detail?.code || `http_${response.status}`,
      detail?.message || response.statusText || 'no explanation given',
    );
  }

  // ---------------------------------------------------------------- messages to the operator

  function describe(err) {
    if (!(err instanceof ApiError)) return `unexpected: ${err?.message || err}`;
    const hint = CODE_HINTS[err.code] || STATUS_HINTS[err.status];
    return `${err.code}: ${err.message}${hint ? ` — ${hint}` : ''}${err.status ? ` (HTTP ${err.status})` : ''}`;
  }

  function showError(err) {
    if (!(err instanceof ApiError)) console.error(err);
    const box = byId('error');
    box.textContent = describe(err);
    box.dataset.code = err?.code || 'unexpected';
  }

  function notify(text) {
    byId('notice').textContent = text;
  }

  function clearMessages() {
    byId('error').textContent = '';
    delete byId('error').dataset.code;
    notify('');
  }

  /** Shows `err`; a 401 on a session means it ended: back to the login form. */
  function fail(err) {
    if (err instanceof ApiError && err.status === 401 && session.token()) logOut();
    showError(err);
  }

  /** `fn` with its failure shown instead of thrown. */
  const guard = (fn) => async (...args) => {
    try {
      return await fn(...args);
    } catch (err) {
      fail(err);
      return undefined;
    }
  };

  /** A handler of an operator's click or submit: clears old messages, disables its button meanwhile. */
  function action(fn) {
    return async (event) => {
      event?.preventDefault();
      clearMessages();
      const target = event?.submitter || event?.currentTarget;
      const button = target instanceof HTMLButtonElement ? target : null;
      if (button) button.disabled = true;
      try {
        await fn(event);
      } catch (err) {
        fail(err);
      } finally {
        if (button) button.disabled = false;
      }
    };
  }

  // ---------------------------------------------------------------- login

  function showView(loggedIn) {
    byId('login').hidden = loggedIn;
    byId('main').hidden = !loggedIn;
    byId('session').hidden = !loggedIn;
    byId('whoami').textContent = loggedIn ? session.email() : '';
  }

  async function logIn() {
    const email = byId('login-email').value.trim();
    const password = byId('login-password').value;
    if (!email || !password) throw new ApiError(null, 'credentials_required', 'type your e-mail and password');
    session.clear();
    const token = await api('POST', '/api/token', { body: { email, password } });
    session.save(token, email);
    byId('login-password').value = '';
    enterMain();
  }

  /** The main view: the panels, and the saga in the address (or the one on screen) traced afresh. */
  function enterMain() {
    showView(true);
    loadPanels();
    const saga = hashSaga() || state.saga;
    if (saga) guard(() => traceSaga(saga, { push: false }))();
  }

  function placeholder(text) {
    return el('p', { class: 'muted' }, text);
  }

  function resetViews() {
    const timeline = byId('timeline');
    timeline.replaceChildren(placeholder('Search a saga id to see its messages, lane by lane, in causal order.'));
    timeline.removeAttribute('data-saga');
    timeline.dataset.loaded = 'false';
    byId('dead-letters').dataset.loaded = 'false';
    ['dead-letters', 'outbox', 'health', 'actions', 'events'].forEach((id) => byId(id).replaceChildren());
  }

  /** Forgets the token (the server has no revocation for one token) and every datum shown. */
  function logOut() {
    session.clear();
    state.saga = null;
    state.traceSeq += 1;
    state.expanded.clear();
    state.collapsed.clear();
    resetViews();
    showView(false);
  }

  // ---------------------------------------------------------------- saga id in the address (#saga=<id>)

  function hashSaga() {
    const match = /^#saga=(.+)$/.exec(window.location.hash);
    if (!match) return null;
    try {
      return decodeURIComponent(match[1]);
    } catch {
      return match[1];
    }
  }

  function setHash(id) {
    const hash = `#saga=${enc(id)}`;
    if (window.location.hash !== hash) history.pushState(null, '', hash);
  }

  function routeFromHash() {
    const id = hashSaga();
    if (!session.token() || !id || id === state.saga) return;
    clearMessages();
    guard(() => traceSaga(id, { push: false }))();
  }

  // ---------------------------------------------------------------- saga trace

  async function traceSaga(id, { push = true } = {}) {
    const saga = String(id).trim();
    if (!saga) throw new ApiError(null, 'saga_id_required', 'type an order, user, withdrawal or trigger id');
    state.saga = saga;
    byId('saga-id').value = saga;
    if (push) setHash(saga);
    await reloadTrace();
  }

  /** Loads and draws the trace of the saga on screen; answers to older requests are dropped. */
  async function reloadTrace() {
    const saga = state.saga;
    if (!saga) return;
    const seq = ++state.traceSeq;
    const box = byId('timeline');
    box.dataset.saga = saga;
    box.dataset.loaded = 'false';
    box.setAttribute('aria-busy', 'true');
    try {
      const trace = await api('GET', `/api/admin/trace/${enc(saga)}`);
      if (seq === state.traceSeq) box.replaceChildren(...renderTrace(trace));
    } catch (err) {
      if (seq !== state.traceSeq) return;
      box.replaceChildren(placeholder(`No trace of ${saga}.`));
      throw err;
    } finally {
      if (seq === state.traceSeq) {
        box.dataset.loaded = 'true';
        box.removeAttribute('aria-busy');
      }
    }
  }

  /** What the cards of a trace look up: steps, letters and actions by message id, lanes, start time. */
  function traceContext(trace) {
    const times = trace.steps.map((s) => parseTime(s.occurred_at)).filter((t) => t !== null);
    return {
      steps: new Map(trace.steps.map((s) => [s.message_id, s])),
      letters: groupBy(trace.dead_letters, (l) => l.message_id),
      actions: groupBy(trace.actions, (a) => a.message_id),
      lanes: deriveLanes(trace),
      start: times.length ? new Date(Math.min(...times)).toISOString() : null,
    };
  }

  /** The services a saga touched: producers, consumers that applied or parked, outboxes. */
  function deriveLanes(trace) {
    const seen = new Set();
    for (const step of trace.steps) {
      seen.add(step.producer);
      step.applied_by.forEach((a) => seen.add(a.service));
      step.parked_in.forEach((q) => seen.add(serviceOfQueue(q)));
    }
    trace.waiting.forEach((w) => seen.add(w.service));
    trace.dead_letters.forEach((l) => {
      seen.add(serviceOfQueue(l.queue));
      if (l.producer) seen.add(l.producer);
    });
    const known = LANE_ORDER.filter((lane) => seen.has(lane));
    const others = [...seen].filter((lane) => !LANE_ORDER.includes(lane)).sort();
    return [...known, ...others];
  }

  function renderTrace(trace) {
    const ctx = traceContext(trace);
    return [
      traceSummary(trace),
      laneGrid(trace, ctx),
      sagaLetters(trace, ctx),
      sagaActions(trace, ctx),
    ].filter(Boolean);
  }

  function traceSummary(trace) {
    const count = (standing) => trace.steps.filter((s) => s.standing === standing).length;
    const figures = [
      ['messages', trace.steps.length, ''],
      ['applied', count('applied'), 'ok'],
      ['parked', count('parked'), 'bad'],
      ['retrying', count('retrying'), 'warn'],
      ['published, not applied', count('published'), 'warn'],
      ['waiting in an outbox', trace.waiting.length, 'warn'],
      ['dead letters', trace.dead_letters.length, 'bad'],
      ['operator actions', trace.actions.length, ''],
    ];
    return el('div', { class: 'trace-summary' },
      el('h3', {}, 'saga ', el('code', {}, trace.id)),
      el('ul', { class: 'figures' }, figures.map(([label, n, tone]) =>
        el('li', { class: n > 0 && tone ? tone : null }, el('b', {}, n), ` ${label}`))),
      trace.unreachable.length > 0 && el('p', { class: 'warn-line' },
        `⚠ did not answer: ${trace.unreachable.join(', ')} — where their consumers stand is unknown`));
  }

  /** One column per lane, one row per message: document order is causal order. */
  function laneGrid(trace, ctx) {
    const laneOf = (service) => Math.max(0, ctx.lanes.indexOf(service));
    const rows = trace.steps.length + trace.waiting.length;
    const grid = el('div', { class: 'lanes' });
    grid.style.gridTemplateColumns = `repeat(${ctx.lanes.length}, minmax(16rem, 1fr))`;
    ctx.lanes.forEach((lane, i) => {
      const band = el('div', { class: `lane-band${i % 2 ? ' alt' : ''}`, 'aria-hidden': 'true' });
      band.style.gridRow = `1 / span ${rows + 1}`;
      band.style.gridColumn = String(i + 1);
      grid.append(band, place(el('div', { class: 'lane-head', 'data-lane': lane }, lane), 1, i));
    });
    let row = 2;
    for (const step of trace.steps) {
      grid.append(place(stepCard(step, ctx), row, laneOf(step.producer)));
      consumerMarks(step).forEach(({ service, node }) => grid.append(place(node, row, laneOf(service))));
      row += 1;
    }
    for (const waiting of trace.waiting) {
      grid.append(place(waitingCard(waiting, ctx), row, laneOf(waiting.service)));
      row += 1;
    }
    return el('div', { class: 'lanes-scroll' }, grid);
  }

  function standingBadge(standing) {
    return el('span', { class: `badge ${standing}`, title: STANDING_TITLES[standing] || null },
      STANDING_LABELS[standing] || standing);
  }

  function stepCard(step, ctx) {
    const actions = ctx.actions.get(step.message_id) || [];
    const letters = ctx.letters.get(step.message_id) || [];
    const transition = transitionText(step.transition);
    const retried = step.republished_at.length > 0 || actions.some((a) => a.action !== 'discard');
    const card = el('article', {
      class: `step standing-${step.standing}${retried ? ' retried' : ''}`,
      tabindex: '0',
      'data-type': step.type,
      'data-message-id': step.message_id,
      'data-producer': step.producer,
      'data-standing': step.standing,
      'data-transition': transition,
      'data-cause': step.causation_id || '',
    },
    el('header', { class: 'step-head' }, el('span', { class: 'type' }, step.type), standingBadge(step.standing)),
    el('div', { class: 'meta' },
      timeEl(step.occurred_at, clockTime(step.occurred_at)), ' ', muted(delta(ctx.start, step.occurred_at)),
      ' · ', muted(`#${step.offset}`), ' · ', code(step.message_id)),
    transition && el('div', { class: 'transition' }, transition),
    causeLine(step, ctx),
    causedLine(step, ctx),
    appliedList(step),
    parkedLines(step, letters),
    retryLines(step),
    step.republished_at.length > 0 && el('div', { class: 'retry' },
      `↻ republished ×${step.republished_at.length} (log offsets ${step.republished_at.join(', ')})`),
    actionList(actions),
    stepDetails(step));
    const relate = (on) => () => highlightRelations(step, on);
    ['mouseenter', 'focusin'].forEach((e) => card.addEventListener(e, relate(true)));
    ['mouseleave', 'focusout'].forEach((e) => card.addEventListener(e, relate(false)));
    return card;
  }

  function waitingCard(waiting, ctx) {
    return el('article', {
      class: 'step standing-waiting',
      tabindex: '0',
      'data-type': waiting.type,
      'data-message-id': waiting.message_id,
      'data-producer': waiting.service,
      'data-standing': 'waiting',
      'data-transition': '',
    },
    el('header', { class: 'step-head' }, el('span', { class: 'type' }, waiting.type), standingBadge('waiting')),
    el('div', { class: 'meta' },
      'written ', timeEl(waiting.written_at, clockTime(waiting.written_at)), ' ', muted(delta(ctx.start, waiting.written_at)),
      ' · ', code(waiting.message_id)),
    el('div', { class: 'muted' }, `in the outbox of ${waiting.service}, not in the event log yet (${ago(waiting.written_at)})`),
    waiting.parked && el('div', { class: 'parked' }, '✗ a command no queue takes yet: its relay keeps publishing it'));
  }

  /** The consumers' side of a message, in their own lanes: applied or parked there. */
  function consumerMarks(step) {
    const lines = new Map();
    const add = (service, line) => {
      if (service === step.producer) return; // shown on the card itself
      if (!lines.has(service)) lines.set(service, []);
      lines.get(service).push(line);
    };
    step.applied_by.forEach((a) => add(a.service,
      el('div', { class: 'ok' }, `✓ ${a.consumer} `, muted(delta(step.occurred_at, a.at)))));
    step.parked_in.forEach((q) => add(serviceOfQueue(q), el('div', { class: 'bad' }, `✗ parked in ${q}`)));
    return [...lines].map(([service, nodes]) => ({
      service,
      node: el('div', { class: 'mark', 'data-for': step.message_id }, nodes),
    }));
  }

  function findStep(id) {
    return byId('timeline').querySelector(`.step[data-message-id="${CSS.escape(id)}"]`);
  }

  function focusStep(id) {
    const card = findStep(id);
    if (!card) return;
    card.scrollIntoView({ block: 'center', behavior: 'smooth' });
    card.classList.remove('flash');
    void card.offsetWidth; // restarts the animation
    card.classList.add('flash');
    card.focus({ preventScroll: true });
  }

  function highlightRelations(step, on) {
    if (step.causation_id) findStep(step.causation_id)?.classList.toggle('is-cause', on);
    step.caused.forEach((id) => findStep(id)?.classList.toggle('is-effect', on));
  }

  function stepLink(step) {
    return el('button', {
      type: 'button',
      class: 'link',
      title: `go to ${step.message_id}`,
      on: { click: () => focusStep(step.message_id) },
    }, `${step.type} (${step.producer})`);
  }

  function causeLine(step, ctx) {
    if (!step.causation_id) return el('div', { class: 'cause muted' }, '← a request');
    const cause = ctx.steps.get(step.causation_id);
    if (!cause) return el('div', { class: 'cause muted' }, '← ', code(step.causation_id), ' (not in this saga)');
    return el('div', { class: 'cause' }, '← ', stepLink(cause));
  }

  function causedLine(step, ctx) {
    const effects = step.caused.map((id) => ctx.steps.get(id)).filter(Boolean);
    if (!effects.length) return null;
    return el('div', { class: 'caused' }, '→ ', effects.map((e, i) => [i ? ', ' : '', stepLink(e)]));
  }

  function appliedList(step) {
    if (!step.applied_by.length) return null;
    const who = (a) => (a.consumer.startsWith(`${a.service}.`) ? a.consumer : `${a.service} ${a.consumer}`);
    return el('ul', { class: 'applied' }, step.applied_by.map((a) =>
      el('li', {}, `✓ ${who(a)} `, timeEl(a.at, delta(step.occurred_at, a.at) || clockTime(a.at)))));
  }

  function parkedLines(step, letters) {
    return step.parked_in.map((queue) => {
      const letter = letters.find((l) => `${l.queue}.dlq` === queue);
      return el('div', { class: 'parked' },
        `✗ parked in ${queue}`,
        letter && ` after ${letter.attempts ?? '?'} attempts`,
        letter && el('div', { class: 'error-text' }, letter.error || 'no error recorded'));
    });
  }

  function retryLines(step) {
    return (step.retries || []).map((r) => el('div', { class: 'retrying', 'data-consumer': r.consumer },
      `↻ ${r.consumer}: attempt ${r.attempt} at `, timeEl(r.retry_at, clockTime(r.retry_at)),
      el('div', { class: 'error-text' }, r.error || 'no error recorded')));
  }

  function actionText(a) {
    const what = `${a.action}${a.forced ? ' (forced)' : ''}`;
    const moved = a.action === 'discard' ? '' : `, ${a.replayed} put back`;
    return `${what} on ${a.queue}${moved} by ${shortId(a.by)}`;
  }

  function actionList(actions) {
    if (!actions.length) return null;
    return el('ul', { class: 'actions' }, actions.map((a) =>
      el('li', {}, '⚑ ', timeEl(a.at, clockTime(a.at)), ` ${actionText(a)}`, a.reason && muted(` — “${a.reason}”`))));
  }

  function definitionList(pairs) {
    return el('dl', { class: 'facts' }, pairs.map(([term, value]) => [el('dt', {}, term), el('dd', {}, value ?? '—')]));
  }

  function stepDetails(step) {
    return el('details', { class: 'details' },
      el('summary', {}, 'details'),
      definitionList([
        ['message id', step.message_id],
        ['saga', step.correlation_id],
        ['caused by', step.causation_id],
        ['exchange', step.exchange],
        ['routing key', step.routing_key],
        ['occurred', `${fullTime(step.occurred_at)} UTC`],
        ['log offset', step.offset],
      ]),
      el('pre', { class: 'payload' }, prettyJson(step.payload)),
      republishForm(step));
  }

  function republishForm(step) {
    const reason = el('input', { type: 'text', class: 'republish-reason', placeholder: 'reason (recorded)', 'aria-label': 'reason' });
    const force = el('input', { type: 'checkbox', class: 'republish-force' });
    return el('form', { class: 'republish', on: { submit: action(() => republish(step, reason, force)) } },
      reason, el('label', {}, force, ' force'),
      el('button', { type: 'submit', class: 'republish-button' }, 'Republish'));
  }

  /** `{force, reason?}` for a replay or a republish. */
  function replayBody(reasonInput, forceInput) {
    const reason = reasonInput.value.trim();
    return reason ? { force: forceInput.checked, reason } : { force: forceInput.checked };
  }

  async function republish(step, reasonInput, forceInput) {
    const body = replayBody(reasonInput, forceInput);
    const answer = await api('POST', `/api/admin/messages/${enc(step.message_id)}/republish`, { body });
    const skipping = answer.applied_by.map((a) => a.consumer).join(', ');
    notify(`republished ${answer.type} ${shortId(answer.message_id)}: ${answer.note}${skipping ? ` (${skipping})` : ''}`);
    await refreshAfterAction();
  }

  function sagaLetters(trace, ctx) {
    if (!trace.dead_letters.length) return null;
    return el('section', { class: 'saga-extra' },
      el('h3', {}, 'Dead letters of this saga'),
      el('ul', { class: 'plain' }, trace.dead_letters.map((l) =>
        el('li', { class: 'bad-left' },
          el('b', {}, l.queue), ' ',
          l.message_id && ctx.steps.has(l.message_id) ? stepLink(ctx.steps.get(l.message_id)) : (l.type || 'not an envelope'),
          muted(` · ${l.attempts ?? '?'} attempts`),
          el('div', { class: 'error-text' }, l.error || 'no error recorded')))));
  }

  function sagaActions(trace, ctx) {
    if (!trace.actions.length) return null;
    return el('section', { class: 'saga-extra' },
      el('h3', {}, 'Operator actions'),
      el('ul', { class: 'plain' }, trace.actions.map((a) => {
        const step = a.message_id && ctx.steps.get(a.message_id);
        return el('li', {}, timeEl(a.at), ` ${actionText(a)} `, step ? stepLink(step) : code(a.message_id),
          a.reason && muted(` — “${a.reason}”`));
      })));
  }

  function sagaLink(id) {
    return el('button', {
      type: 'button',
      class: 'link',
      title: `trace saga ${id}`,
      on: {
        click: action(async () => {
          byId('saga-id').scrollIntoView({ block: 'start', behavior: 'smooth' });
          await traceSaga(id);
        }),
      },
    }, id);
  }

  // ---------------------------------------------------------------- dead letters

  const letterCount = (q) => q.dead_letters ?? 0;

  /** Queues with letters open unless closed by hand; empty ones closed unless opened. */
  function isOpen(q) {
    return letterCount(q) > 0 ? !state.collapsed.has(q.queue) : state.expanded.has(q.queue);
  }

  async function loadDeadLetters() {
    const box = byId('dead-letters');
    box.dataset.loaded = 'false';
    try {
      const queues = await api('GET', '/api/admin/dead-letters');
      queues.sort((a, b) => Number(letterCount(b) > 0) - Number(letterCount(a) > 0));
      const nodes = await Promise.all(queues.map(queueNode));
      const total = queues.reduce((sum, q) => sum + letterCount(q), 0);
      const busy = queues.filter((q) => letterCount(q) > 0).length;
      box.replaceChildren(
        el('p', { class: total ? 'bad' : 'ok' }, total ? `${total} parked in ${busy} queue(s)` : 'no dead letters'),
        ...nodes);
    } finally {
      box.dataset.loaded = 'true';
    }
  }

  async function queueNode(q) {
    const open = isOpen(q);
    const letters = open && letterCount(q) > 0
      ? await api('GET', `/api/admin/dead-letters/${enc(q.queue)}?max=100`)
      : [];
    return queueView(q, open, letters);
  }

  function queueView(q, open, letters) {
    const count = letterCount(q);
    const node = el('section', {
      class: `dlq${count ? ' has-letters' : ''}`,
      'data-queue': q.queue,
      'data-service': q.service,
      'data-count': count,
      'data-declared': String(q.dead_letters !== null && q.dead_letters !== undefined),
      'data-open': String(open),
    },
    el('header', { class: 'dlq-head' },
      el('button', {
        type: 'button',
        class: 'toggle',
        'aria-expanded': String(open),
        on: { click: action(() => toggleQueue(q, node)) },
      }, `${open ? '▾' : '▸'} ${q.queue}`),
      muted(q.service),
      el('span', { class: 'count' }, q.dead_letters === null ? 'not declared' : String(count)),
      count > 0 && el('button', { type: 'button', class: 'replay-all', on: { click: action(() => replayAll(q.queue)) } },
        'Replay all')),
    open && (letters.length
      ? el('ol', { class: 'letters' }, letters.map((l) => letterView(q.queue, l)))
      : placeholder('nothing parked')));
    return node;
  }

  /** Remembers a queue opened or closed by hand (only what differs from the default). */
  function setOpen(q, open) {
    state.collapsed.delete(q.queue);
    state.expanded.delete(q.queue);
    if (letterCount(q) > 0 && !open) state.collapsed.add(q.queue);
    if (letterCount(q) === 0 && open) state.expanded.add(q.queue);
  }

  async function toggleQueue(q, node) {
    setOpen(q, !isOpen(q));
    node.replaceWith(await queueNode(q));
  }

  function letterView(queue, letter) {
    const id = letter.message_id;
    const reason = el('input', { type: 'text', class: 'reason', placeholder: 'reason (required to discard)', 'aria-label': 'reason' });
    const force = el('input', { type: 'checkbox', class: 'force' });
    return el('li', {
      class: 'letter',
      'data-message-id': id || '',
      'data-type': letter.type || '',
      'data-queue': queue,
    },
    el('div', { class: 'letter-head' },
      el('span', { class: 'type' }, letter.type || '(not an envelope)'), ' ',
      letter.correlation_id && ['saga ', sagaLink(letter.correlation_id), ' '],
      letter.producer && muted(`from ${letter.producer}`)),
    el('div', { class: 'error-text' }, letter.error || 'no error recorded'),
    el('div', { class: 'meta' },
      `${letter.attempts ?? '?'} attempts · occurred `, timeEl(letter.occurred_at),
      ' ', muted(letter.occurred_at ? `(${ago(letter.occurred_at)})` : ''), ' · ', code(id)),
    el('details', { class: 'details' }, el('summary', {}, 'payload'),
      el('pre', { class: 'payload' }, letter.payload !== null && letter.payload !== undefined
        ? prettyJson(letter.payload)
        : (letter.raw ?? ''))),
    el('div', { class: 'letter-actions' },
      reason,
      el('label', { title: 'replay even if older than the inbox window' }, force, ' force'),
      el('button', { type: 'button', class: 'replay', disabled: !id, on: { click: action(() => replayLetter(queue, id, reason, force)) } },
        'Replay'),
      el('button', { type: 'button', class: 'discard danger', disabled: !id, on: { click: action(() => discardLetter(queue, id, reason)) } },
        'Discard')));
  }

  function replayedText(outcome) {
    const refused = outcome.refused.length;
    return `replayed ${outcome.replayed}${refused ? `; ${refused} left parked (older than the inbox window: replay each with force once you know it was never applied)` : ''}`;
  }

  async function replayLetter(queue, id, reasonInput, forceInput) {
    const body = replayBody(reasonInput, forceInput);
    const outcome = await api('POST', `/api/admin/dead-letters/${enc(queue)}/${enc(id)}/replay`, { body });
    notify(`${queue}: ${replayedText(outcome)}`);
    await refreshAfterAction();
  }

  async function replayAll(queue) {
    const outcome = await api('POST', `/api/admin/dead-letters/${enc(queue)}/replay-all`, { body: { force: false } });
    notify(`${queue}: ${replayedText(outcome)}`);
    await refreshAfterAction();
  }

  async function discardLetter(queue, id, reasonInput) {
    const reason = reasonInput.value.trim();
    if (!reason) {
      reasonInput.focus();
      throw new ApiError(null, 'reason_required', 'a discard needs a reason');
    }
    const done = await api('POST', `/api/admin/dead-letters/${enc(queue)}/${enc(id)}/discard`, { body: { reason } });
    notify(`discarded ${done.type || 'message'} ${shortId(done.message_id)} from ${done.queue}`);
    await refreshAfterAction();
  }

  /** After a replay, discard or republish: what it changed. */
  async function refreshAfterAction() {
    await Promise.all([loadDeadLetters, reloadTrace, loadActions].map((fn) => guard(fn)()));
  }

  // ---------------------------------------------------------------- outbox, health, actions, events

  async function loadOutbox() {
    const services = await api('GET', '/api/admin/outbox');
    byId('outbox').replaceChildren(
      table(['service', 'backlog', 'oldest', 'parked', 'last publish'], services.map(outboxRow)));
  }

  function outboxRow(s) {
    const o = s.outbox;
    if (!o) {
      return el('tr', { class: 'outbox-service down', 'data-service': s.service, 'data-error': s.error || 'no answer' },
        el('th', { scope: 'row' }, s.service), el('td', { colspan: '4', class: 'bad' }, s.error || 'did not answer'));
    }
    const tone = o.parked > 0 ? 'has-parked' : o.backlog > 0 ? 'has-backlog' : '';
    return el('tr', {
      class: `outbox-service ${tone}`.trim(),
      'data-service': s.service,
      'data-backlog': o.backlog,
      'data-parked': o.parked,
    },
    el('th', { scope: 'row' }, s.service),
    el('td', { class: 'num' }, o.backlog),
    el('td', { class: 'num' }, o.oldest_age_ms === null || o.oldest_age_ms === undefined ? '—' : duration(o.oldest_age_ms)),
    el('td', { class: 'num' }, o.parked),
    el('td', {}, o.last_publish ? timeEl(o.last_publish, ago(o.last_publish)) : muted('none since start')));
  }

  async function loadHealth() {
    const services = await api('GET', '/api/admin/health');
    if (!Array.isArray(services)) throw new ApiError(null, 'bad_health', '/api/admin/health gave no list');
    const byUp = ([a, upA], [b, upB]) => Number(upA) - Number(upB) || a.localeCompare(b);
    const down = services.flatMap((s) => s.status === null
      ? [`${s.service} (no answer)`]
      : Object.entries(s.checks).filter(([, up]) => !up).map(([name]) => `${s.service} ${name}`));
    const box = byId('health');
    box.dataset.status = down.length ? 'not_ready' : 'ready';
    box.replaceChildren(
      el('p', { class: down.length ? 'bad' : 'ok' }, down.length ? `not ready — down: ${down.join(', ')}` : 'every service ready'),
      ...services.map((s) => el('section', { class: 'service-health', 'data-service': s.service, 'data-status': s.status || 'unreachable' },
        el('h4', {}, s.service, ' ', el('span', { class: s.status === 'ready' ? 'ok' : 'bad' }, s.status || s.error)),
        el('ul', { class: 'components' }, Object.entries(s.checks).sort(byUp).map(([name, up]) =>
          el('li', { class: `component ${up ? 'up' : 'down'}`, 'data-component': name, 'data-up': String(Boolean(up)) },
            el('span', { class: 'dot', 'aria-hidden': 'true' }, up ? '●' : '○'), ` ${name} `,
            el('span', { class: 'state' }, up ? 'up' : 'down')))))));
  }

  async function loadActions() {
    const page = await api('GET', '/api/admin/dead-letter-actions?per_page=20');
    const rows = page.items.map((a) => el('tr', { class: 'action-row', 'data-action': a.action },
      el('td', {}, timeEl(a.at)),
      el('td', {}, `${a.action}${a.forced ? ' (forced)' : ''}`),
      el('td', {}, a.queue),
      el('td', {}, a.type || '—'),
      el('td', {}, code(a.message_id)),
      el('td', { class: 'num' }, a.replayed),
      el('td', {}, a.reason || '—'),
      el('td', {}, code(a.by))));
    byId('actions').replaceChildren(rows.length
      ? table(['at (UTC)', 'action', 'queue / exchange', 'type', 'message', 'put back', 'reason', 'by'], rows)
      : placeholder('none recorded'),
    muted(`${page.items.length} newest of ${page.total}`));
  }

  async function readEvents(page) {
    const params = new URLSearchParams({ page: String(page), per_page: String(EVENTS_PER_PAGE) });
    const from = byId('events-from').value.trim();
    const type = byId('events-type').value.trim();
    if (from) params.set('from', from);
    if (type) params.set('type', type);
    const result = await api('GET', `/api/admin/events?${params}`);
    state.events = { page: result.page, pages: Math.max(1, Math.ceil(result.total / result.per_page)) };
    byId('events-prev').disabled = state.events.page <= 1;
    byId('events-next').disabled = state.events.page >= state.events.pages;
    const rows = result.items.map((e) => el('tr', { class: 'event-row', 'data-type': e.type, 'data-message-id': e.message_id },
      el('td', { class: 'num' }, e.offset),
      el('td', {}, timeEl(e.occurred_at)),
      el('td', {}, e.type),
      el('td', {}, e.producer),
      el('td', {}, sagaLink(e.correlation_id)),
      el('td', {}, code(e.causation_id))));
    byId('events').replaceChildren(
      rows.length ? table(['offset', 'occurred (UTC)', 'type', 'producer', 'saga', 'caused by'], rows) : placeholder('no message'),
      muted(`page ${state.events.page} of ${state.events.pages} · ${result.total} messages`));
  }

  /** Dead letters, outbox, readiness and operator actions, side by side; each shows its own failure. */
  async function loadPanels() {
    await Promise.all([loadDeadLetters, loadOutbox, loadHealth, loadActions].map((fn) => guard(fn)()));
  }

  // ---------------------------------------------------------------- start

  function init() {
    byId('login-form').addEventListener('submit', action(logIn));
    byId('logout').addEventListener('click', () => {
      clearMessages();
      logOut();
    });
    byId('refresh').addEventListener('click', action(loadPanels));
    byId('saga-form').addEventListener('submit', action(() => traceSaga(byId('saga-id').value)));
    byId('events-form').addEventListener('submit', action(() => readEvents(1)));
    byId('events-prev').addEventListener('click', action(() => readEvents(state.events.page - 1)));
    byId('events-next').addEventListener('click', action(() => readEvents(state.events.page + 1)));
    window.addEventListener('hashchange', routeFromHash);
    window.addEventListener('popstate', routeFromHash);
    if (session.token()) {
      enterMain();
    } else {
      session.clear();
      showView(false);
    }
  }

  init();
})();
