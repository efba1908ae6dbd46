// Slider captcha UI for browsers (first cut): shown when the gateway answers
// the challenge with `captcha_required` (risk rank 4). The user drags the
// piece into the gap; the answer is the piece's final x and the drag trace
// [ms, x, y]. Keyboard: focus the handle, arrows move 1 px (Shift: 10 px),
// Enter submits; Escape cancels. See PROTOCOL.md section 5.

const TEXT = {
  title: 'Security check',
  hint: 'Drag the slider so the piece fits the gap',
  handle: 'Slide to fit the piece; arrow keys move it, Enter confirms',
  cancel: 'Cancel',
};

/**
 * Shows the puzzle and resolves `{ x, trace }`, or rejects with an Error
 * whose `cancelled` is true when the user closes it.
 * `puzzle`: the JSON of GET /.portcullis/captcha; `urls`: {bg, piece}.
 */
export function sliderCaptcha(doc, puzzle, urls, text = {}) {
  const t = { ...TEXT, ...text };
  const w = puzzle.width, p = puzzle.piece, max = w - p;
  return new Promise((resolve, reject) => {
    const el = (tag, css, attrs = {}) => {
      const e = doc.createElement(tag);
      e.style.cssText = css;
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      return e;
    };
    const overlay = el('div', 'position:fixed;inset:0;background:rgba(0,0,0,.45);display:flex;align-items:center;justify-content:center;z-index:2147483647;font:14px/1.4 system-ui,sans-serif', { 'data-portcullis': 'captcha' });
    const box = el('div', `background:#fff;color:#222;border-radius:8px;padding:16px;width:${w}px;box-shadow:0 8px 30px rgba(0,0,0,.3)`, { role: 'dialog', 'aria-modal': 'true', 'aria-label': t.title });
    const title = el('div', 'font-weight:600;margin-bottom:4px');
    title.textContent = t.title;
    const hint = el('div', 'color:#555;margin-bottom:8px', { id: 'pc-captcha-hint' });
    hint.textContent = t.hint;
    const stage = el('div', `position:relative;width:${w}px;height:${puzzle.height}px;overflow:hidden;border-radius:4px;user-select:none`);
    const bg = el('img', `display:block;width:${w}px;height:${puzzle.height}px`, { src: urls.bg, alt: '', draggable: 'false' });
    const piece = el('img', `position:absolute;left:0;top:${puzzle.piece_y}px;width:${p}px;height:${p}px;box-shadow:0 0 4px #fff`, { src: urls.piece, alt: '', draggable: 'false' });
    const track = el('div', `position:relative;margin-top:10px;width:${w}px;height:${p}px;background:#eef1f5;border-radius:${p / 2}px`);
    const handle = el('div', `position:absolute;left:0;top:0;width:${p}px;height:${p}px;border-radius:50%;background:#2f6fed;cursor:grab;touch-action:none;outline-offset:2px`, {
      role: 'slider', tabindex: '0', 'aria-label': t.handle, 'aria-describedby': 'pc-captcha-hint',
      'aria-valuemin': '0', 'aria-valuemax': String(max), 'aria-valuenow': '0', 'data-portcullis': 'handle',
    });
    const cancel = el('button', 'margin-top:10px;background:none;border:0;color:#2f6fed;cursor:pointer;padding:0', { type: 'button' });
    cancel.textContent = t.cancel;
    stage.append(bg, piece);
    track.append(handle);
    box.append(title, hint, stage, track, cancel);
    overlay.append(box);
    doc.body.append(overlay);
    handle.focus();

    let x = 0, t0 = 0, dragging = false, startX = 0, startY = 0, done = false;
    const trace = [];
    const now = () => (doc.defaultView && doc.defaultView.performance ? doc.defaultView.performance.now() : Date.now());
    const move = (nx, dy) => {
      x = Math.max(0, Math.min(max, nx));
      piece.style.left = handle.style.left = x + 'px';
      handle.setAttribute('aria-valuenow', String(Math.round(x)));
      if (!t0) t0 = now();
      trace.push([Math.round(now() - t0), Math.round(x), Math.round(dy)]);
    };
    const finish = (ok) => {
      if (done) return;
      done = true;
      overlay.remove();
      if (ok) resolve({ x: Math.round(x * 10) / 10, trace: trace.slice(0, 2000) });
      else reject(Object.assign(new Error('captcha cancelled'), { cancelled: true }));
    };
    handle.addEventListener('pointerdown', (e) => {
      dragging = true; startX = e.clientX - x; startY = e.clientY;
      handle.setPointerCapture && handle.setPointerCapture(e.pointerId);
      handle.style.cursor = 'grabbing';
      move(x, 0);
    });
    handle.addEventListener('pointermove', (e) => { if (dragging) move(e.clientX - startX, e.clientY - startY); });
    const up = () => { if (dragging) { dragging = false; finish(true); } };
    handle.addEventListener('pointerup', up);
    handle.addEventListener('pointercancel', up);
    handle.addEventListener('keydown', (e) => {
      const step = e.shiftKey ? 10 : 1;
      if (e.key === 'ArrowRight') { move(x + step, 0); e.preventDefault(); }
      else if (e.key === 'ArrowLeft') { move(x - step, 0); e.preventDefault(); }
      else if (e.key === 'Enter') { e.preventDefault(); finish(true); }
      else if (e.key === 'Escape') finish(false);
    });
    cancel.addEventListener('click', () => finish(false));
  });
}
