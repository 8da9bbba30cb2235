// The page: joins the run named by the URL fragment (#token=...; optional &delay=ms before uploading, in round
// &delay_round=r only if given, to simulate a slow device) and shows progress, the round, bytes sent and the latest global accuracy. The token travels in the
// fragment, which the browser never sends in HTTP requests; the page hands it to the server in its hello message.

import { RoundClient } from './client.mjs';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
const token = params.get('token') ?? '';
const delay = Number(params.get('delay') ?? 0);
const delayRound = params.has('delay_round') ? Number(params.get('delay_round')) : null;

function human(n) {
  const units = ['B', 'kB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function log(line) {
  const el = $('log');
  el.textContent += `${new Date().toISOString().slice(11, 19)}  ${line}\n`;
  el.scrollTop = el.scrollHeight;
}

const state = { client: null, round: null, accuracy: null, uploaded: [], results: [], errors: [], done: false };
const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const client = new RoundClient(url, token, {
  delayUploadMs: delay,
  delayRound,
  onEvent(kind, ev) {
    switch (kind) {
      case 'open': $('status').textContent = 'connected; waiting for the configuration'; break;
      case 'welcome':
        state.client = ev.client;
        $('client').textContent = ev.client;
        $('status').textContent = `joined: ${ev.config.servers} aggregators, d = ${ev.config.length}, ` +
          `${ev.config.ring.name}, ${ev.samples} local samples`;
        log(`welcome: client ${ev.client}, task ${ev.task.kind}, ${ev.rounds} rounds`);
        break;
      case 'round':
        state.round = ev.round;
        $('round').textContent = ev.round;
        $('progress').value = 0;
        $('status').textContent = `round ${ev.round}: training locally`;
        break;
      case 'progress': $('progress').value = ev.fraction; break;
      case 'delay': state.delaying = ev.round; log(`round ${ev.round}: holding the upload for ${ev.ms} ms`); break;
      case 'trained': log(`round ${ev.round}: local loss ${ev.loss.toFixed(4)}, ${ev.clipped} coordinates clipped`); break;
      case 'uploaded':
        state.uploaded.push(ev.round);
        $('bytes').textContent = human(client.bytesSent);
        $('status').textContent = `round ${ev.round}: shares uploaded, waiting for the aggregate`;
        log(`round ${ev.round}: uploaded ${ev.bytes} bytes (encode + share ${ev.encode_share_ms.toFixed(1)} ms)`);
        break;
      case 'result':
        state.accuracy = ev.accuracy;
        state.results.push(ev.round);
        $('accuracy').textContent = `${(100 * ev.accuracy).toFixed(1)} %`;
        $('status').textContent = `round ${ev.round} done: ${ev.clients.length} clients aggregated`;
        log(`round ${ev.round}: aggregate of clients ${ev.clients.join(', ')}; accuracy ${(100 * ev.accuracy).toFixed(2)} %`);
        break;
      case 'error': state.errors.push(ev.message); log(`error: ${ev.message}`); break;
      case 'done': state.done = true; $('status').textContent = 'all rounds done'; log('done'); break;
      case 'close':
        if (!state.done) $('status').textContent = `disconnected (${ev.code}${ev.reason ? ': ' + ev.reason : ''})`;
        break;
      default: break;
    }
  },
});
window.refimpl = { client, state };
if (!token) $('status').textContent = 'no enrolment token in the URL (#token=...): open the link the server printed';
else client.run();
