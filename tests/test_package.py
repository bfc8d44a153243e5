"Tests of the installed package: the console command, bad input, the model cache."
import json, os, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT

SHARED = ROOT.parent/'shared'/'data'
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason='../shared/data is absent (CI always has it)')

def ift_nb(*args, env=None, timeout=600):
    return subprocess.run(['ift_nb', *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)

def test_console_script_help():
    r = ift_nb('--help')
    assert r.returncode == 0 and 'pretrain' in r.stdout and 'check' in r.stdout

def test_package_data_installed():
    from ift_nb.base import embedded_path
    from ift_nb.data import load_embedded
    for f in ('sentiment.jsonl', 'summarization.jsonl', 'corpus.txt'): assert embedded_path(f).stat().st_size > 0
    sent = load_embedded('sentiment')
    assert len(sent) >= 200 and {r.output for r in sent} == {'正面', '负面', 'positive', 'negative'}
    assert len(load_embedded('summarization')) >= 60

@pytest.mark.parametrize('content,where', [
    ('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": ""}\n', "line 2, field 'output': empty answer"),
    ('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": "b"\n', "line 2: invalid JSON"),
    ('{"instruction": "a", "output": 7}\n', "line 1, field 'output': expected a string"),
    ('{"output": "b"}\n', "line 1, field 'instruction': missing field"),
    ('', 'the file is empty'),
])
def test_check_bad_file(tmp_path, content, where):
    p = tmp_path/'d.jsonl'; p.write_text(content, encoding='utf-8')
    r = ift_nb('check', str(p))
    assert r.returncode == 2, r.stdout + r.stderr
    assert str(p) in r.stderr and where in r.stderr
    assert 'Traceback' not in r.stderr

def test_check_gbk_and_directory(tmp_path):
    p = tmp_path/'gbk.jsonl'; p.write_bytes('{"instruction": "判断", "output": "正面"}\n'.encode('gbk'))
    r = ift_nb('check', str(p))
    assert r.returncode == 2 and 'line 1: not UTF-8' in r.stderr and 'Traceback' not in r.stderr
    r = ift_nb('check', str(tmp_path))
    assert r.returncode == 2 and 'is a directory' in r.stderr

def test_check_lenient_counts_skips(tmp_path):
    p = tmp_path/'d.jsonl'
    p.write_text('{"instruction": "a", "output": "正面"}\n{"instruction": "a", "output": "中性"}\n{"x": 1}\n', encoding='utf-8')
    r = ift_nb('check', str(p), '--labels', '正面,负面', '--lenient')
    assert r.returncode == 0
    assert 'read 3 rows, kept 1, skipped 2' in r.stdout and 'line 2' in r.stdout

def test_interrupted_save_leaves_no_model(tmp_path, monkeypatch):
    "A crash while the model is written leaves neither a half-written model nor temp folders in the cache."
    import ift_nb.base as base
    monkeypatch.setenv('IFT_NB_CACHE', str(tmp_path))
    texts = ['这家酒店很好，服务周到。', 'The food was cold and the staff rude.'] * 200
    def boom(*a, **k): raise RuntimeError('disk full')
    monkeypatch.setattr(base.PreTrainedTokenizerFast, 'save_pretrained', boom)
    with pytest.raises(RuntimeError, match='disk full'): base.base_model_path(corpus=texts, steps=2, vocab_size=300)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo(); monkeypatch.setenv('IFT_NB_CACHE', str(tmp_path))
    p = base.base_model_path(corpus=texts, steps=2, vocab_size=300)
    assert [q.name for q in tmp_path.iterdir()] == [p.name] and (p/'model.safetensors').exists()
    model, tok = base.load_base(p)
    assert base.pretrain_info(p)['steps'] == 2 and tok.pad_token == '<|pad|>'

def test_cache_key_changes_with_settings_and_corpus():
    from ift_nb.base import base_model_key
    a = base_model_key(['x'], size='tiny', steps=2)
    assert a == base_model_key(['x'], size='tiny', steps=2)
    assert a != base_model_key(['x'], size='tiny', steps=3) and a != base_model_key(['y'], size='tiny', steps=2)

@needs_shared
def test_shared_sets_load_in_one_call():
    from ift_nb.data import load_shared, SHARED as sets
    for name in sets:
        recs = load_shared(name, data_dir=SHARED)
        assert len(recs) > 800 and recs.report.n_kept == recs.report.n_read, name

@needs_shared
def test_shared_tokenizer_masks_by_position():
    from transformers import PreTrainedTokenizerFast
    from ift_nb.data import encode, Record, IGNORE_INDEX
    tok = PreTrainedTokenizerFast(tokenizer_file=str(SHARED/'tokenizers/minimind_zh_bpe6400.json'), eos_token='<|endoftext|>', pad_token='<|endoftext|>')
    ex = encode(Record('请将以下文本分类为正面或负面。', '房间不大，但很干净。', '正面'), tok)
    assert tok.decode([i for i, l in zip(ex['input_ids'], ex['labels']) if l != IGNORE_INDEX]) == '正面<|endoftext|>'

@needs_shared
def test_eval_at_answer_positions_equals_full_logits_on_a_hostile_tokenizer(tmp_path):
    "Eval loss and token accuracy from the logits at the answer positions only equal those from every position (1e-5): a real BPE tokenizer whose pad is its EOS, answers of 1 to 60 tokens, some cut by max_length."
    import torch
    from transformers import PreTrainedTokenizerFast, LlamaConfig, LlamaForCausalLM
    from ift_nb.data import load_shared, tokenize_dataset, Collator
    from ift_nb.objective import answer_loss
    import dataclasses
    from ift_nb.train import TrainConfig, evaluate_records
    tok = PreTrainedTokenizerFast(tokenizer_file=str(SHARED/'tokenizers/minimind_zh_bpe6400.json'), eos_token='<|endoftext|>', pad_token='<|endoftext|>')
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
    recs = load_shared('chnsenticorp_dev', data_dir=SHARED, limit=12) + load_shared('csl_title_dev', data_dir=SHARED, limit=12)
    ds = tokenize_dataset(recs, tok, 'zh', 96, verbose=False)
    assert any(ds['truncated']), 'no example was cut'
    ds = ds.remove_columns(['truncated'])
    b, opt = Collator(tok.pad_token_id)(list(ds)), torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(25):  # a few steps, so that some answer tokens are predicted right and the token accuracies compared are not both 0
        answer_loss(model(input_ids=b['input_ids'], attention_mask=b['attention_mask']).logits, b['labels']).backward(); opt.step(); opt.zero_grad()
    c = TrainConfig(output_dir=str(tmp_path), device='cpu', batch_size=5, max_length=96)
    kept, full = (evaluate_records(model, tok, recs, dataclasses.replace(c, answer_logits_only=a)) for a in (True, False))
    assert full['eval_token_accuracy'] > 0.05, full
    for k in ('eval_loss', 'eval_token_accuracy'): assert abs(kept[k] - full[k]) <= 1e-5, (k, kept[k], full[k])

def test_train_on_parquet_with_columns_and_label_map_then_eval_an_hf_set(tmp_path):
    "A parquet file with its own column names and labels trains through `columns:` and `label_map:` in the config; a save_to_disk folder and an hf: folder evaluate."
    import datasets, pyarrow as pa, pyarrow.parquet as pq
    from ift_nb.data import load_embedded
    recs = load_embedded('sentiment', 'zh')
    rows = [dict(text=r.input, label={'正面': 'pos', '负面': 'neg'}[r.output]) for r in recs]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path/'reviews.parquet')
    datasets.Dataset.from_list([dict(instruction=r.instruction, input=r.input, output=r.output) for r in recs[:20]]).save_to_disk(str(tmp_path/'dev'))
    (tmp_path/'c.yaml').write_text(f"model: base\ntrain: {tmp_path/'reviews.parquet'}\ncolumns: {{input: text, output: label}}\nlabel_map: {{pos: 正面, neg: 负面}}\n"
                                   f"instruction_pool: null\nlabels: [正面, 负面]\nmax_steps: 2\nbatch_size: 4\noutput_dir: {tmp_path/'run'}\n", encoding='utf-8')
    r = ift_nb('train', str(tmp_path/'c.yaml'), env={**os.environ, 'IFT_NB_QUIET': '1'})
    assert r.returncode == 2 and "missing field" in r.stderr and "'instruction'" in r.stderr, r.stderr[-800:]  # the parquet rows have no instruction
    pq.write_table(pa.Table.from_pylist([dict(ask=recs[0].instruction, **x) for x in rows]), tmp_path/'reviews.parquet')
    (tmp_path/'c.yaml').write_text((tmp_path/'c.yaml').read_text(encoding='utf-8').replace('input: text,', 'instruction: ask, input: text,'), encoding='utf-8')
    r = ift_nb('train', str(tmp_path/'c.yaml'), env={**os.environ, 'IFT_NB_QUIET': '1'})
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path/'run'/'metrics.json').read_text())['train_examples'] == len(recs)
    (tmp_path/'devset').mkdir(); datasets.load_from_disk(str(tmp_path/'dev')).to_json(str(tmp_path/'devset'/'test.jsonl'), force_ascii=False)
    for data in (str(tmp_path/'dev'), f"hf:{tmp_path/'devset'}"):
        r = ift_nb('eval', '--model', str(tmp_path/'run'), '--data', data, '--labels', '正面,负面')
        assert r.returncode == 0 and '| n ' in r.stdout and '20' in r.stdout, (data, r.stdout, r.stderr[-1500:])

def test_finished_run_is_watched_carded_and_loads_with_transformers_alone(tmp_path):
    "report_to: tensorboard leaves an events file; metrics.jsonl, curves.png and a model card are written; plain transformers in a fresh process gives ift_nb predict's answers."
    pytest.importorskip('tensorboard', reason='tensorboard is not installed (pip install -e ".[dev]")')
    (tmp_path/'c.yaml').write_text(f"model: base\ntrain: embedded:sentiment:zh\ntemplate: chat\nmax_steps: 4\nlogging_steps: 1\nbatch_size: 4\nreport_to: tensorboard\noutput_dir: {tmp_path/'run'}\n", encoding='utf-8')
    r = ift_nb('train', str(tmp_path/'c.yaml'), env={**os.environ, 'IFT_NB_QUIET': '1'})
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path/'run'
    assert 'metrics.jsonl' in r.stdout and 'curves.png' in r.stdout
    assert list(run.glob('**/events.out.tfevents*')), sorted(str(p.relative_to(run)) for p in run.rglob('*'))
    logs = [json.loads(l) for l in (run/'metrics.jsonl').read_text().splitlines()]
    assert [h['step'] for h in logs if 'loss' in h] == [1, 2, 3, 4] and (run/'curves.png').stat().st_size > 1000
    card = (run/'README.md').read_text(encoding='utf-8')
    assert 'base_model:' in card and 'embedded:sentiment:zh' in card and 'train_loss' in card and '| template' in card
    qs = ['今天天气很好', '这家店的菜太难吃了', '你好']
    (tmp_path/'q.jsonl').write_text(''.join(json.dumps(dict(instruction=q), ensure_ascii=False) + '\n' for q in qs), encoding='utf-8')
    r = ift_nb('predict', '--model', str(run), '--data', str(tmp_path/'q.jsonl'), '--template', 'chat', '--max-new-tokens', '12')
    assert r.returncode == 0, r.stderr[-1500:]
    ours = [json.loads(l)['prediction'] for l in r.stdout.splitlines()]
    code = (f"import json\nfrom transformers import pipeline\np = pipeline('text-generation', model={str(run)!r})\n"
            f"print(json.dumps([p([dict(role='user', content=q)], max_new_tokens=12, do_sample=False)[0]['generated_text'][-1]['content'].strip() for q in {qs!r}]))")
    theirs = json.loads(subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip().splitlines()[-1])
    assert any(ours) and ours == theirs, (ours, theirs)  # not all empty: the same words

def _data_forms(d):
    "The embedded Chinese reviews in every form a data spec may name: spec -> how it was written."
    import datasets, pyarrow as pa, pyarrow.parquet as pq
    from ift_nb.data import load_embedded
    recs = load_embedded('sentiment', 'zh')[:24]
    alpaca = [dict(instruction=r.instruction, input=r.input, output=r.output) for r in recs]
    ds = datasets.Dataset.from_list(alpaca); ds.save_to_disk(str(d/'disk'))
    pq.write_table(pa.Table.from_pylist(alpaca), d/'t.parquet')
    (d/'hf').mkdir(); ds.to_json(str(d/'hf'/'train.jsonl'), force_ascii=False)
    lines = lambda rows: ''.join(json.dumps(x, ensure_ascii=False) + '\n' for x in rows)
    (d/'pc.jsonl').write_text(lines([dict(prompt=f"{r.instruction}\n{r.input}", completion=r.output) for r in recs]), encoding='utf-8')
    (d/'pcc.jsonl').write_text(lines([dict(prompt=[dict(role='user', content=r.input)], completion=[dict(role='assistant', content=r.output)]) for r in recs]), encoding='utf-8')
    return {str(d/'t.parquet'): 'parquet', str(next((d/'disk').glob('*.arrow'))): 'arrow', str(d/'disk'): 'save_to_disk',
            f"hf:{d/'hf'}": 'hf: folder', str(d/'pc.jsonl'): 'TRL prompt-completion', str(d/'pcc.jsonl'): 'TRL conversational'}

def test_every_data_form_trains_a_step(tmp_path):
    "Parquet, Arrow, a save_to_disk folder, an hf: folder and TRL's two prompt-completion layouts each train one step on the tiny base, every row read."
    from ift_nb.train import train
    for spec, form in _data_forms(tmp_path).items():
        m = train(dict(model='base', train=spec, max_steps=1, batch_size=4, output_dir=str(tmp_path/'run'/form.replace(' ', '_').replace(':', ''))), verbose=False)
        assert m['steps'] == 1 and m['train_examples'] == 24, (form, m)

def test_demo_meets_its_figures(tmp_path):
    "The README's main job on the real base (Gemma 3 270M, LoRA): IFT lifts both sentiment sets to >= 0.85, 20 points over zero-shot, and doubles ROUGE-L."
    r = ift_nb('demo', '--output-dir', str(tmp_path/'demo'), timeout=1500)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'base model' in r.stdout and 'after IFT' in r.stdout and 'sentiment zh' in r.stdout
    res = json.loads((tmp_path/'demo'/'demo.json').read_text())
    b, a = ({k: v[1] for k, v in res[s].items()} for s in ('before', 'after'))
    for t in ('sentiment zh', 'sentiment en'): assert a[t] >= 0.85 and a[t] - b[t] >= 0.20, (t, b[t], a[t])
    assert a['summaries zh+en'] >= 2 * b['summaries zh+en'], res
    assert (tmp_path/'demo'/'model'/'model.safetensors').exists() and (tmp_path/'demo'/'model'/'curves.png').exists()

def test_demo_fast_path_learns(tmp_path):
    "`--model base` (the tiny model, seconds): the pipeline runs and the summaries' ROUGE-L rises."
    r = ift_nb('demo', '--model', 'base', '--output-dir', str(tmp_path/'demo'))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path/'demo'/'demo.json').read_text())
    assert set(res['before']) == set(res['after']) == {'sentiment zh', 'sentiment en', 'summaries zh+en'}
    assert res['after']['summaries zh+en'][1] > res['before']['summaries zh+en'][1] + 0.01, res

def test_train_cli_resumes_after_kill(tmp_path):
    "A CLI training run killed with SIGKILL after its first checkpoint resumes from it and finishes."
    import signal, time
    cfg = tmp_path/'c.yaml'
    cfg.write_text(f"model: base\ntrain: embedded:sentiment\noutput_dir: {tmp_path/'run'}\nmax_steps: 400\nsave_steps: 5\nbatch_size: 4\nlogging_steps: 5\n", encoding='utf-8')
    p = subprocess.Popen(['ift_nb', 'train', str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, 'IFT_NB_QUIET': '1'})
    t0 = time.time()
    while time.time() - t0 < 300 and not list((tmp_path/'run').glob('checkpoint-*/trainer_state.json')): time.sleep(0.5)
    time.sleep(1)
    p.send_signal(signal.SIGKILL); p.wait()
    ckpts = sorted(int(c.name.split('-')[1]) for c in (tmp_path/'run').glob('checkpoint-*') if (c/'trainer_state.json').exists())
    assert ckpts, 'no checkpoint written before the kill'
    cfg.write_text(cfg.read_text().replace('max_steps: 400', f'max_steps: {ckpts[-1] + 10}'), encoding='utf-8')
    r = ift_nb('train', str(cfg), env={'IFT_NB_QUIET': '1'})
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'resuming from' in r.stdout, r.stdout[-2000:]
    m = json.loads((tmp_path/'run'/'metrics.json').read_text())
    assert m['steps'] == ckpts[-1] + 10 and m['resumed_from'].endswith(f'checkpoint-{ckpts[-1]}'), (ckpts, m['steps'], m['resumed_from'])

def test_overwrite_killed_keeps_the_finished_run(tmp_path):
    "An `--overwrite` killed mid-training leaves the finished run it was replacing whole, in .previous-run, where readers load it from; the next overwrite that finishes replaces it."
    import signal, time
    cfg, run = tmp_path/'c.yaml', tmp_path/'run'
    base = f"model: base\ntrain: embedded:sentiment\noutput_dir: {run}\nsave_steps: 5\nbatch_size: 4\nlogging_steps: 5\n"
    cfg.write_text(base + 'max_steps: 5\n', encoding='utf-8')
    assert ift_nb('train', str(cfg), env={'IFT_NB_QUIET': '1'}).returncode == 0
    old = {f: (run/f).read_bytes() for f in ('metrics.json', 'model.safetensors')}
    cfg.write_text(base + 'max_steps: 400\nseed: 1\n', encoding='utf-8')
    p = subprocess.Popen(['ift_nb', 'train', str(cfg), '--overwrite'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, 'IFT_NB_QUIET': '1'})
    t0 = time.time()  # killed once the old run is set aside and the new one has saved a checkpoint (the old checkpoint-5's links go after the set-aside)
    while time.time() - t0 < 300 and not ((run/'.previous-run'/'metrics.json').is_file() and any(f.stat().st_mtime > t0 for f in run.glob('checkpoint-*/trainer_state.json'))): time.sleep(0.2)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (run/'metrics.json').exists() and {f: (run/'.previous-run'/f).read_bytes() for f in old} == old  # the old run, whole, set aside
    r = ift_nb('eval', '--model', str(run), '--data', 'embedded:sentiment:zh', '--labels', '正面,负面', '--out', str(tmp_path/'m.json'))
    assert r.returncode == 0 and 'an overwrite of this run has not finished' in r.stderr, r.stderr[-1500:]  # readers get the finished run, said so
    from safetensors.torch import load_file
    from ift_nb.base import load_model
    sd, kept = load_model(run, device='cpu').state_dict(), load_file(run/'.previous-run'/'model.safetensors')
    assert all((sd[k] == v).all() for k, v in kept.items())  # ... whose weights they load
    cfg.write_text(base + 'max_steps: 3\nseed: 2\n', encoding='utf-8')
    r = ift_nb('train', str(cfg), '--overwrite', env={'IFT_NB_QUIET': '1'})
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((run/'metrics.json').read_text())['steps'] == 3 and not (run/'.previous-run').exists()
    assert not [c for c in run.glob('checkpoint-*') if int(c.name.split('-')[1]) > 3]  # the killed run's checkpoints went with it

def test_train_cli_bad_config(tmp_path):
    cfg = tmp_path/'c.yaml'; cfg.write_text('model: base\nbatch_size: lots\n', encoding='utf-8')
    r = ift_nb('train', str(cfg))
    assert r.returncode == 2 and "field 'batch_size'" in r.stderr and str(cfg) in r.stderr and 'Traceback' not in r.stderr
    r = ift_nb('train', str(tmp_path/'missing.yaml'))
    assert r.returncode == 2 and 'no such config file' in r.stderr
    cfg.write_text(f'model: base\ntrain: {tmp_path/"nope.jsonl"}\n', encoding='utf-8')
    r = ift_nb('train', str(cfg))
    assert r.returncode == 2 and 'no such file' in r.stderr

@needs_shared
def test_eval_and_predict_on_shared_files(tmp_path):
    r = ift_nb('eval', '--model', 'base', '--data', 'shared:chnsenticorp_dev', '--labels', '正面,负面', '--limit', '16', '--out', str(tmp_path/'m.json'))
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path/'m.json').read_text())
    assert m['n'] == 16 and 0 <= m['accuracy'] <= 1 and len(m['predictions']) == 16
    r = ift_nb('predict', '--model', 'base', '--data', 'shared:csl_title_dev', '--limit', '3', '--max-new-tokens', '8', '--out', str(tmp_path/'p.jsonl'))
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(l) for l in (tmp_path/'p.jsonl').read_text(encoding='utf-8').splitlines()]
    assert len(rows) == 3 and all(set(x) == {'line', 'instruction', 'input', 'prediction', 'reference'} for x in rows)
    assert [x['line'] for x in rows] == [1, 2, 3]  # each prediction names the line of the source it answers

def test_int8_eval_and_predict_are_smoothed(tmp_path):
    "`--int8` smooths on the prompts it will answer, then scores and generates in int8: on the tiny base, accuracy within 0.05 of fp32's."
    args = ('--model', 'base', '--data', 'embedded:sentiment:zh', '--labels', '正面,负面')
    r32, r8 = (ift_nb('eval', *args, *x, '--out', str(tmp_path/f'{i}.json')) for i, x in enumerate(((), ('--int8',))))
    assert r32.returncode == 0 and r8.returncode == 0, r8.stderr[-2000:]
    assert 'int8, smoothed on the prompts of 128 records' in r8.stderr, r8.stderr[-2000:]
    a32, a8 = (json.loads((tmp_path/f'{i}.json').read_text())['accuracy'] for i in range(2))
    assert abs(a8 - a32) <= 0.05, (a32, a8)
    r = ift_nb('predict', '--model', 'base', '--data', 'embedded:sentiment:zh', '--limit', '4', '--max-new-tokens', '4', '--int8')
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 4 and 'int8, smoothed on the prompts of 4 records' in r.stderr, r.stderr[-2000:]

def test_gpt2_family_pretrains_and_fine_tunes(tmp_path, monkeypatch):
    "The second architecture family goes through the same pre-training, IFT and label-scoring code: IFT lowers its held-out answer loss, and one-pass label scoring (with GPT-2's learned positions) agrees with one pass per label."
    monkeypatch.setenv('IFT_NB_CACHE', str(tmp_path/'cache'))
    from ift_nb.base import base_model_path, load_base
    from ift_nb.train import train
    from ift_nb.execute import classify, score_labels
    from ift_nb.data import load_embedded, split_records, save_records
    from ift_nb.bench import held_out_loss
    texts = [r.input for r in load_embedded('sentiment')] * 3
    p = base_model_path('tiny', texts, arch='gpt2', steps=3, vocab_size=500)
    tr, te = split_records(load_embedded('sentiment', 'en'), 0.2, seed=0)
    save_records(tr, tmp_path/'train.jsonl'); save_records(te, tmp_path/'test.jsonl')
    before = held_out_loss(*load_base(p), te, 'zh')
    m = train(dict(model=str(p), train=str(tmp_path/'train.jsonl'), eval=str(tmp_path/'test.jsonl'), output_dir=str(tmp_path/'run'),
                   max_steps=12, batch_size=8, lr=3e-3), verbose=False)
    model, tok = load_base(tmp_path/'run')
    assert model.config.model_type == 'gpt2'
    after = held_out_loss(model, tok, te, 'zh')
    assert abs(after - m['eval_loss']) < 1e-3, (after, m['eval_loss'])  # the saved model is the trained one
    assert after < before / 2, (before, after)  # it learnt the answer form
    labs = ['positive', 'negative']
    assert classify(model, tok, te, labs) == [labs[i] for i in score_labels(model, tok, te, labs).argmax(1).tolist()]

def test_learning_check_fails_when_learning_is_broken(tmp_path):
    "The fast run's check (`learning_gain`, 05_train) fails on the same run with the training labels shuffled among the examples: a run that cannot learn does not pass."
    import random
    from ift_nb.data import Record, load_embedded, split_records, save_records
    from ift_nb.train import TrainConfig
    from ift_nb.experiments import learning_gain
    recs = [Record('这段评论是用哪种语言写的？', r.input, '中文' if r.output in ('正面', '负面') else '英文') for r in load_embedded('sentiment')]
    tr, te = split_records(recs, 0.2, seed=0)  # the notebook's split
    answers = [r.output for r in tr]; random.Random(0).shuffle(answers)
    save_records([Record(r.instruction, r.input, a) for r, a in zip(tr, answers)], tmp_path/'train.jsonl'); save_records(te, tmp_path/'test.jsonl')
    cfg = TrainConfig(model='base', train=str(tmp_path/'train.jsonl'), eval=str(tmp_path/'test.jsonl'), labels=['中文', '英文'],
                      output_dir=str(tmp_path/'run'), epochs=3, batch_size=16, lr=2e-3)
    with pytest.raises(AssertionError, match='no learned effect'): learning_gain(cfg, margin=0.25)

def test_bench_cli_against_trl(tmp_path):
    "`ift_nb bench` from the console: each system in its own process, the table with ratios against TRL, results.json."
    pytest.importorskip('trl', reason='trl is not installed (pip install -e ".[bench]")')
    r = ift_nb('bench', '--data', 'embedded:sentiment:zh', '--n-eval', '16', '--steps', '2', '--batch-size', '8', '--max-length', '128',
               '--systems', 'ift_nb grouped,TRL', '--labels', '正面,负面', '--output-dir', str(tmp_path/'b'), env={'IFT_NB_QUIET': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'speed / TRL' in r.stdout and 'generate and parse' in r.stdout and 'eval s/record' in r.stdout
    res = json.loads((tmp_path/'b'/'results.json').read_text())
    assert set(res['systems']) == {'ift_nb grouped', 'TRL'}
    for s in res['systems'].values():
        assert s['real_tokens'] > 0 and 0 <= s['padding_fraction'] < 1 and s['memory_mb'] > 0 and s['eval_loss'] > 0 and s['eval_seconds_per_record'] > 0
    # the same records in the same order for both: a trained model on disk for each, and one eval set
    assert (tmp_path/'b'/'ift_nb_grouped'/'model.safetensors').exists() and (tmp_path/'b'/'TRL'/'model.safetensors').exists()

def test_bench_cli_bad_data(tmp_path):
    r = ift_nb('bench', '--data', str(tmp_path/'missing.jsonl'), '--output-dir', str(tmp_path/'b'))
    assert r.returncode == 2 and 'missing.jsonl' in r.stderr and 'Traceback' not in r.stderr

def chapter_imports() -> dict:
    "For each ift_nb module: its notebook's chapter (e.g. '02a') and the chapters of the ift_nb modules it imports (anywhere in its code)."
    import ast, re
    chapter = {}
    for f in sorted((ROOT/'ift_nb').glob('*.py')):
        m = re.search(r'File to edit: \.\./nbs/(\w+?)_\w*\.ipynb', f.read_text(encoding='utf-8'))
        if m: chapter[f.stem] = m.group(1)
    out = {}
    for mod, ch in chapter.items():
        names = set()
        for node in ast.walk(ast.parse((ROOT/'ift_nb'/f'{mod}.py').read_text(encoding='utf-8'))):
            if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or '').startswith('ift_nb.')):
                names.add((node.module or '').split('.')[-1])
            elif isinstance(node, ast.Import): names |= {a.name.split('.')[1] for a in node.names if a.name.startswith('ift_nb.')}
        out[(ch, mod)] = sorted((chapter[n], n) for n in names if n in chapter)
    return out

def test_modules_import_only_earlier_chapters():
    "No module imports a module of its own or a later chapter (not even lazily inside a function): the chapters read in order, with no cycle."
    bad = []
    for (ch, mod), deps in sorted(chapter_imports().items()):
        print(f"{ch} {mod:10s} <- " + ', '.join(f'{c} {n}' for c, n in deps))
        bad += [f"{mod} ({ch}) imports {n} ({c})" for c, n in deps if c >= ch]
    assert not bad, bad

def test_notebooks_import_only_earlier_chapters():
    "No code cell of a notebook imports an ift_nb module of a later chapter: a reader running the chapters in order has everything each cell uses."
    import ast, json, re
    chapter = {mod: ch for (ch, mod) in chapter_imports()}
    bad = []
    for nb in sorted((ROOT/'nbs').glob('[0-9]*.ipynb')):
        ch = nb.name.split('_')[0]
        for i, c in enumerate(json.loads(nb.read_text(encoding='utf-8'))['cells']):
            if c['cell_type'] != 'code': continue
            src = '\n'.join(l for l in ''.join(c['source']).splitlines() if not l.lstrip().startswith(('#|', '%', '!')))
            try: tree = ast.parse(src)
            except SyntaxError: continue
            for node in ast.walk(tree):
                mods = [node.module] if isinstance(node, ast.ImportFrom) and node.module else [a.name for a in node.names] if isinstance(node, ast.Import) else []
                for m in mods:
                    n = m.split('.')[1] if m.startswith('ift_nb.') else None
                    if n in chapter and chapter[n] > ch: bad.append(f"{nb.name} cell {i} ({c.get('id')}) imports {n} ({chapter[n]})")
    assert not bad, bad

def test_results_are_data_with_their_provenance():
    "Every slow result kept in nbs/results is `{result, provenance}`: the commit, machine, seed, wall time and the function that made it; the best sentiment model and the sentiment domains read back in their shapes."
    files = sorted((ROOT/'nbs'/'results').glob('*.json'))
    assert files, 'nbs/results holds no result'
    for p in files:
        d = json.loads(p.read_text(encoding='utf-8'))
        assert set(d) == {'result', 'provenance'}, p.name
        prov = d['provenance']
        for k in ('commit', 'date', 'cpu', 'cores', 'torch', 'transformers', 'seed', 'made_by', 'wall_s'): assert k in prov, f"{p.name}: no {k}"
        assert prov['commit'] and prov['made_by'] and (prov['wall_s'] > 0 or prov.get('derived_from')), p.name  # no cost of its own: a summary of other results
        for src in prov.get('derived_from', []): assert (p.parent/src).exists() and src != p.name, f"{p.name}: made from {src}, which is not in nbs/results"
    best = json.loads((ROOT/'nbs'/'results'/'sentiment_best.json').read_text(encoding='utf-8'))['result']
    assert {'accuracy', 'seeds', 'recipe'} <= set(best) and len(best['seeds']) == 3 and 0 < best['accuracy'] <= 1, best
    dom = ROOT/'nbs'/'results'/'sentiment_domains.json'
    if dom.exists():
        rows = json.loads(dom.read_text(encoding='utf-8'))['result']['rows']
        assert {r['domain'] for r in rows} == {'ChnSentiCorp dev', '平板', '水果', '洗发水', '衣服'}
        assert all(0 <= r['ift'] <= 1 and 0 <= r['tfidf'] <= 1 and r['n'] in (500, 1200) for r in rows)
