(function () {
  const D = JSON.parse(document.getElementById('samples-data').textContent);
  const P = new URLSearchParams(location.search), $ = id => document.getElementById(id);
  const st = {split: D.splits[P.get('split')] ? P.get('split') : D.default, lang: P.get('lang') || '',
              sort: P.get('sort') || '', desc: P.get('desc') === '1', score: P.get('score') || '',
              min: P.get('min') || '', max: P.get('max') || '', q: P.get('q') || ''};
  const fmt = x => Number.isInteger(x) ? String(x) : x.toFixed(Math.abs(x) >= 10 ? 2 : 4);
  let lang = '';  // the language shown ('all': every one), resolved from st.lang by render()
  const shown = c => lang === 'all' || !c.lang || c.lang === lang;
  function langOf(S, name) {  // the language of column 'LANG:FIELD', else of the first with FIELD; else null
    const c = S.columns.find(c => c.key === name) || S.columns.find(c => c.lang && c.field === name);
    return name && c ? c.lang : null;
  }
  function pick(S) {  // lang=: a language (deu: deu_Latn) or all; else the one sort (or score) names, else the first
    const want = st.lang === 'all' ? 'all' : st.lang && S.langs.find(l => l === st.lang || l.startsWith(st.lang + '_'));
    return want || langOf(S, st.sort) || langOf(S, st.score) || S.langs[0] || 'all';
  }
  function col(S, name) {  // 'id', 'LANG:FIELD', or FIELD of the chosen language (else the first that has it)
    if (!name) return -1;
    const k = S.columns.findIndex(c => c.key === name);
    return k >= 0 ? k : S.columns.findIndex(c => c.field === name && shown(c));
  }
  function options(sel, values, current) {
    sel.replaceChildren(...values.map(([v, label]) => new Option(label, v, false, v === current)));
  }
  function render() {
    const S = D.splits[st.split];
    lang = pick(S);
    $('samples-box').classList.toggle('all', lang === 'all' && S.langs.length > 1);
    const cols = S.columns.map((c, i) => [c, i]).filter(([c]) => shown(c));
    const nums = cols.filter(([c]) => c.type === 'num'), k = col(S, st.sort);
    let t = col(S, st.score);
    if (t < 0) t = k >= 0 && S.columns[k].type === 'num' ? k : (nums.length ? nums[0][1] : -1);
    options($('f-split'), Object.keys(D.splits).map(s => [s, s]), st.split);
    options($('f-lang'), S.langs.map(l => [l, l]).concat([['all', 'all']]), lang);
    options($('f-score'), nums.map(([c, i]) => [c.key, c.key]), t >= 0 ? S.columns[t].key : '');
    $('f-min').value = st.min; $('f-max').value = st.max; $('f-q').value = st.q;
    const lo = parseFloat(st.min), hi = parseFloat(st.max), q = st.q.toLowerCase();
    let rows = S.rows.filter(r => (!q || cols.some(([c, i]) => c.type === 'text' && r[i] != null &&
                                                   String(r[i]).toLowerCase().includes(q))) &&
      (t < 0 || (isNaN(lo) && isNaN(hi)) || (r[t] != null && !(r[t] < lo) && !(r[t] > hi))));
    if (k >= 0) rows.sort((a, b) => {
      const x = a[k], y = b[k];
      if (x == null || y == null) return (x == null) - (y == null);  // no value: last, either way
      const d = S.columns[k].type === 'num' ? x - y : String(x).localeCompare(String(y), undefined, {numeric: true});
      return st.desc ? -d : d;
    });
    const top = document.createElement('tr'), head = document.createElement('tr');
    for (const [c, i] of cols) {
      const th = document.createElement('th');
      const label = c.label + (i === k ? (st.desc ? ' \u25bc' : ' \u25b2') : '');
      label.split('_').forEach((part, j) => {  // xl_sonar_sim may break after each _: narrow score columns
        if (j) th.append('_', document.createElement('wbr'));
        th.append(part);
      });
      th.dataset.col = c.key; th.title = c.source ? c.key + ' (' + c.source + ')' : c.key;
      if (i === k) th.setAttribute('aria-sort', st.desc ? 'descending' : 'ascending');
      th.onclick = () => { st.desc = st.sort === c.key ? !st.desc : c.type === 'num'; st.sort = c.key; update(); };
      head.appendChild(th);
      const last = top.lastChild;
      if (last && last.dataset.lang === String(c.lang)) last.colSpan += 1;
      else { const g = document.createElement('th'); g.className = 'lang'; g.dataset.lang = String(c.lang);
             g.textContent = c.lang || ''; top.appendChild(g); }
    }
    $('samples-head').replaceChildren(top, head);
    $('samples-head').style.setProperty('--lang-row', top.getBoundingClientRect().height + 'px');  // 2nd row sticks below
    $('samples-body').replaceChildren(...rows.map(r => {
      const tr = document.createElement('tr'); tr.dataset.id = r[0];
      for (const [c, i] of cols) {
        const td = tr.insertCell(), v = r[i]; td.dataset.col = c.key;
        if (c.type === 'num') { td.className = 'num'; if (v != null) td.dataset.v = v; }
        td.textContent = v == null ? '' : c.type === 'num' ? fmt(v) : v;
      }
      return tr;
    }));
    $('status').textContent = rows.length + ' of ' + S.rows.length + ' samples' +
      (t >= 0 && !(isNaN(lo) && isNaN(hi)) ? ' (threshold on ' + S.columns[t].key + ')' : '');
  }
  function update() {
    const p = new URLSearchParams();
    for (const [key, v] of Object.entries(st)) if (v && !(key === 'split' && v === D.default)) p.set(key, v === true ? '1' : v);
    try { history.replaceState(null, '', '?' + p.toString() + location.hash); } catch (e) { /* some file:// pages */ }
    render();
  }
  const bind = (id, key, ev) => $(id).addEventListener(ev, e => {
    st[key] = e.target.value; if (key === 'split') { st.sort = st.score = ''; st.lang = ''; } update(); });
  bind('f-split', 'split', 'change'); bind('f-score', 'score', 'change');
  $('f-lang').addEventListener('change', e => {  // a sort or threshold on the language left: the same field of the new one
    const S = D.splits[st.split]; st.lang = e.target.value;
    for (const key of ['sort', 'score']) {
      const c = S.columns.find(c => c.key === st[key]);
      if (c && c.lang && st.lang !== 'all' && c.lang !== st.lang)
        st[key] = S.columns.some(d => d.key === st.lang + ':' + c.field) ? st.lang + ':' + c.field : '';
    }
    update();
  });
  bind('f-min', 'min', 'input'); bind('f-max', 'max', 'input'); bind('f-q', 'q', 'input');
  render();
})();
