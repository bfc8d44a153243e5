"Reliability, security and multi-process training: each test fails when the promised behaviour breaks."
import argparse, json, os, random, re, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest
import torch
from safetensors.torch import load_file
from conftest import ROOT

QUIET = {'IFT_NB_QUIET': '1'}

def ift_nb(*args, env=None, timeout=600):
    return subprocess.run(['ift_nb', *args], capture_output=True, text=True, env={**os.environ, **QUIET, **(env or {})}, timeout=timeout)

def write_cfg(path, **kw) -> Path:
    base = dict(model='base', train='embedded:sentiment', batch_size=4, logging_steps=10, seed=0, resume=True)
    path.write_text(''.join(f"{k}: {json.dumps(v, ensure_ascii=False)}\n" for k, v in (base | kw).items()), encoding='utf-8')
    return path

def weights(folder) -> dict: return load_file(str(Path(folder)/'model.safetensors'))

# ---- bad input: every file ends in a clear, located error (or a counted skip), never a deep traceback

def test_bad_inputs_end_in_located_errors(tmp_path):
    cases = {  # file name, content, what stderr must say
        'labels.jsonl': ('{"instruction": "判断", "input": "好", "output": "正面"}\n{"instruction": "判断", "input": "一般", "output": "中性"}\n',
                         ["line 2", "field 'output'", '中性']),
        'types.jsonl': ('{"instruction": ["a"], "output": "b"}\n', ["line 1", "field 'instruction'"]),
        'nofield.csv': ('instruction,answer\na,b\n', ["field 'output'"]),
        'emptyanswer.tsv': ('instruction\toutput\na\t\n', ["line 2", "field 'output'", 'empty answer']),
    }
    for name, (content, musts) in cases.items():
        p = tmp_path/name; p.write_text(content, encoding='utf-8')
        r = ift_nb('check', str(p), '--labels', '正面,负面')
        assert r.returncode == 2, (name, r.stdout, r.stderr)
        assert str(p) in r.stderr and 'Traceback' not in r.stderr, (name, r.stderr)
        for m in musts: assert m in r.stderr, (name, m, r.stderr)

def test_bom_loads_and_huge_lines_are_handled(tmp_path):
    bom = tmp_path/'bom.jsonl'; bom.write_bytes('\ufeff{"instruction": "判断", "output": "正面"}\n'.encode('utf-8'))
    r = ift_nb('check', str(bom))
    assert r.returncode == 0 and 'kept 1' in r.stdout, r.stdout + r.stderr
    big = '很好' * 2_500_000  # a 15 MB line
    ok = tmp_path/'big.jsonl'; ok.write_text(json.dumps(dict(instruction='判断', input=big, output='正面'), ensure_ascii=False) + '\n', encoding='utf-8')
    r = ift_nb('check', str(ok))
    assert r.returncode == 0 and 'kept 1' in r.stdout, r.stdout[-500:] + r.stderr[-500:]
    bad = tmp_path/'bigbad.jsonl'
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "判断", "input": "' + big + '", "output": \n', encoding='utf-8')
    r = ift_nb('check', str(bad))
    assert r.returncode == 2 and 'line 2' in r.stderr and 'invalid JSON' in r.stderr and 'Traceback' not in r.stderr
    assert len(r.stderr) < 2000, 'the error must not echo a 15 MB line'

def test_lenient_training_reports_what_it_skips(tmp_path):
    data = tmp_path/'d.jsonl'
    rows = [dict(instruction='判断', input=f'第{i}条', output='正面') for i in range(12)]
    data.write_text(''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in rows) + '{"broken\n' + '{"instruction": "x", "output": ""}\n', encoding='utf-8')
    cfg = write_cfg(tmp_path/'c.yaml', train=str(data), output_dir=str(tmp_path/'run'), max_steps=2, strict_data=False)
    r = ift_nb('train', str(cfg))
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'read 14 rows, kept 12, skipped 2' in r.stdout, r.stdout[-2000:]
    assert json.loads((tmp_path/'run'/'metrics.json').read_text())['train_examples'] == 12
    r = ift_nb('train', str(write_cfg(tmp_path/'s.yaml', train=str(data), output_dir=str(tmp_path/'run2'), max_steps=2)))
    assert r.returncode == 2 and 'line 13' in r.stderr and 'Traceback' not in r.stderr  # strict (the default) stops at the first bad row

def test_config_unknown_key_and_wrong_type(tmp_path):
    r = ift_nb('train', str(write_cfg(tmp_path/'c.yaml', output_dir=str(tmp_path/'run'), learnrate=0.1)))
    assert r.returncode == 2 and 'unknown key' in r.stderr and 'learnrate' in r.stderr and 'learning_rate' in r.stderr and 'Traceback' not in r.stderr
    assert not (tmp_path/'run'/'model.safetensors').exists()

# ---- kill and resume, reproducibility, numerical safety

def test_sigkill_at_random_step_then_resume_is_bit_identical(tmp_path):
    "An uninterrupted run and a run killed with SIGKILL at a random moment after a checkpoint, then resumed, end with the same weights, bit for bit."
    a = write_cfg(tmp_path/'a.yaml', output_dir=str(tmp_path/'a'), max_steps=150, save_steps=10)
    b = write_cfg(tmp_path/'b.yaml', output_dir=str(tmp_path/'b'), max_steps=150, save_steps=10)
    assert ift_nb('train', str(a)).returncode == 0
    p = subprocess.Popen(['ift_nb', 'train', str(b)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **QUIET})
    t0 = time.time()
    while time.time() - t0 < 300 and not list((tmp_path/'b').glob('checkpoint-*/trainer_state.json')): time.sleep(0.05)
    time.sleep(random.Random().uniform(0, 1.0))
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (tmp_path/'b'/'model.safetensors').exists(), 'the run finished before the kill: nothing was tested'
    r = ift_nb('train', str(b))
    assert r.returncode == 0 and 'resuming from' in r.stdout, r.stdout[-1000:] + r.stderr[-1000:]
    wa, wb = weights(tmp_path/'a'), weights(tmp_path/'b')
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ma, mb = (json.loads((tmp_path/d/'metrics.json').read_text()) for d in 'ab')
    assert (mb['steps'], mb['examples_seen'], mb['real_tokens']) == (ma['steps'], ma['examples_seen'], ma['real_tokens']), (ma, mb)  # the whole run counted
    assert abs(mb['train_loss'] - ma['train_loss']) < 1e-5 * abs(ma['train_loss']), (ma['train_loss'], mb['train_loss'])

def test_same_seed_same_losses(tmp_path):
    hist = []
    for name in ('r1', 'r2'):
        assert ift_nb('train', str(write_cfg(tmp_path/f'{name}.yaml', output_dir=str(tmp_path/name), max_steps=12, logging_steps=1))).returncode == 0
        hist.append([h['loss'] for h in json.loads((tmp_path/name/'metrics.json').read_text())['history'] if 'loss' in h])
    assert len(hist[0]) == 12 and hist[0] == hist[1]
    r3 = write_cfg(tmp_path/'r3.yaml', output_dir=str(tmp_path/'r3'), max_steps=12, logging_steps=1, seed=1)
    assert ift_nb('train', str(r3)).returncode == 0
    assert [h['loss'] for h in json.loads((tmp_path/'r3'/'metrics.json').read_text())['history'] if 'loss' in h] != hist[0]  # the seed matters

def test_non_finite_loss_stops_with_step_and_good_checkpoint(tmp_path):
    cfg = write_cfg(tmp_path/'c.yaml', output_dir=str(tmp_path/'run'), max_steps=30, lr=1e6, optim='sgd', scheduler='constant', warmup=0,
                    save_steps=1, logging_steps=1, resume=False)
    r = ift_nb('train', str(cfg))
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    m = re.search(r'non-finite (?:loss \((?:nan|inf|-inf)\)|weights) at step (\d+).*the last good checkpoint is (\S+)', r.stderr)  # the loss, or the weights before a checkpoint
    assert m, r.stderr[-2000:]
    step, good = int(m.group(1)), Path(m.group(2))
    assert int(good.name.split('-')[1]) < step and all(torch.isfinite(t).all() for t in weights(good).values())
    assert not (tmp_path/'run'/'model.safetensors').exists()

# ---- security defaults

def test_pickle_checkpoints_are_not_loaded(tmp_path):
    "A folder with only a pickled pytorch_model.bin is refused; the pickle never runs."
    from ift_nb.base import base_model_path, load_model
    d = tmp_path/'pickled'; d.mkdir()
    shutil.copy(base_model_path()/'config.json', d/'config.json')
    marker = tmp_path/'pwned'
    class Evil:
        def __reduce__(self): return (open, (str(marker), 'w'))
    torch.save({'x': Evil()}, d/'pytorch_model.bin')
    with pytest.raises(OSError): load_model(d)
    assert not marker.exists()

def test_remote_code_is_not_run(tmp_path):
    from ift_nb.base import load_model, load_tokenizer
    d = tmp_path/'remote'; d.mkdir()
    marker = tmp_path/'pwned'
    (d/'evil.py').write_text(f"open({str(marker)!r}, 'w').close()\nfrom transformers import PretrainedConfig\nclass EvilConfig(PretrainedConfig): model_type = 'evil'\n")
    (d/'config.json').write_text(json.dumps(dict(model_type='evil', auto_map={'AutoConfig': 'evil.EvilConfig', 'AutoModelForCausalLM': 'evil.EvilModel'})))
    with pytest.raises((ValueError, OSError)): load_model(d)
    assert not marker.exists()

def test_yaml_is_read_safely(tmp_path):
    marker = tmp_path/'pwned'
    cfg = tmp_path/'c.yaml'; cfg.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n", encoding='utf-8')
    r = ift_nb('train', str(cfg))
    assert r.returncode == 2 and 'invalid YAML' in r.stderr and 'Traceback' not in r.stderr
    assert not marker.exists()

def test_no_unsafe_torch_load_in_the_package():
    for f in (ROOT/'ift_nb').glob('*.py'):
        for m in re.finditer(r'torch\.load\(([^)]*)\)', f.read_text()):
            assert 'weights_only=True' in m.group(1), f"{f.name}: torch.load without weights_only=True"

# ---- several processes

@pytest.mark.skipif(shutil.which('torchrun') is None, reason='torchrun is not installed')
def test_torchrun_two_processes_match_one(tmp_path):
    "2 CPU processes (gloo, data-parallel through the Trainer) x batch 4 against 1 process x batch 8: the same global batches, so the same losses and weights up to float summation order."
    one = write_cfg(tmp_path/'one.yaml', output_dir=str(tmp_path/'one'), max_steps=20, batch_size=8, logging_steps=1)
    two = write_cfg(tmp_path/'two.yaml', output_dir=str(tmp_path/'two'), max_steps=20, batch_size=4, logging_steps=1)
    assert ift_nb('train', str(one)).returncode == 0
    r = subprocess.run(['torchrun', '--nproc_per_node', '2', '--no-python', 'ift_nb', 'train', str(two)], capture_output=True, text=True,
                       env={**os.environ, **QUIET}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('model saved to') == 1  # one process reports and writes
    h1, h2 = [[h['loss'] for h in json.loads((tmp_path/n/'metrics.json').read_text())['history'] if 'loss' in h] for n in ('one', 'two')]
    assert len(h1) == len(h2) == 20
    assert max(abs(a - b) for a, b in zip(h1, h2)) < 1e-4, (h1, h2)
    w1, w2 = weights(tmp_path/'one'), weights(tmp_path/'two')
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-4

# ---- after loading: arguments, results and output folders. One table of bad inputs and faults, run through the `ift_nb` entry point
# in this process (`ift_nb.cli.main`, what the console script calls); each case: the command, its exit status, words its message must
# hold and what must be left as it was. Then a few real processes: a planted package, a second run into a busy folder.

import contextlib, errno, io
from dataclasses import dataclass, field as dfield
from typing import Callable

CFG = "model: base\ntrain: embedded:sentiment:zh\nbatch_size: 4\nmax_steps: 2\nlogging_steps: 1\noutput_dir: {t}/run\n"
ROWS = '{"instruction": "判断情感", "input": "好吃", "output": "正面"}\n{"instruction": "判断情感", "input": "难吃", "output": "负面"}\n'
DEEP = '{"instruction": "a", "output": "b"}\n{"input": ' + '[' * 100_000 + ']' * 100_000 + '}\n'
UNLABELED = '{"instruction": "判断情感", "input": "好吃"}\n\n{"instruction": "判断情感", "input": "难吃"}\n{"oops": 1}\n'

def _main(*argv):
    "Exit status, stdout and stderr of the `ift_nb` command run in this process."
    from ift_nb.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()

@dataclass
class Case:
    argv: list  # the command line; "{t}" is the case's own folder
    code: int  # its exit status
    words: list  # what it must say (on stderr when it fails)
    files: dict = dfield(default_factory=dict)  # files to write first, "{t}" formatted in names and texts
    light: bool = True  # the command must stop before any model is loaded or trained
    prepare: Callable|None = None  # (t, monkeypatch): more setting up, or a fault to inject
    then: Callable|None = None  # (t, out, err): what must hold afterwards (nothing lost)

def _over(base, extra):
    "Config text `base` with the keys of `extra` replaced by extra's lines (a config may not give a key twice)."
    keys = {l.split(':')[0] for l in extra.splitlines() if l and not l.startswith((' ', '-', '#'))}
    return ''.join(l + '\n' for l in base.splitlines() if l.split(':')[0] not in keys) + extra
def _cfg(extra=''): return {'c.yaml': _over(CFG, extra)}
def _train(extra='', *more, code=2, words=(), **kw): return Case(['train', '{t}/c.yaml', *more], code, list(words), _cfg(extra), **kw)
def _field(key, value, says='', extra='', *words):
    "A config with one bad value: the error names the file and the field (and says `says` after it)."
    return _train(f'{key}: {value}\n{extra}', words=[f"c.yaml, field '{key}'" + (f": {says}" if says else ''), *words])
def _eval(*more, code=2, words=(), cmd='eval', **kw): return Case([cmd, '--model', 'base', '--data', 'embedded:sentiment:zh', *more], code, list(words), **kw)
def _bench(*more, words=()): return Case(['bench', '--data', 'embedded:sentiment:zh', '--output-dir', '{t}/b', *more], 2, list(words))

def _finished(t, mp):
    "A finished 2-step run (the same config), copied in."
    shutil.copytree(_FINISHED, t/'run')
def _with_ckpts(t, mp, damage=None):
    "The same run killed after its checkpoints (no metrics.json), one checkpoint damaged by `damage`."
    shutil.copytree(_FINISHED, t/'run'); (t/'run'/'metrics.json').unlink(); (t/'run'/'model.safetensors').unlink()
    if damage: damage(t/'run'/'checkpoint-2')
def _cut(name): return lambda ck: (ck/name).write_bytes((ck/name).read_bytes()[:1000])
def _unchanged(t, out, err):
    assert (t/'run'/'metrics.json').read_bytes() == (_FINISHED/'metrics.json').read_bytes()
    assert (t/'run'/'model.safetensors').read_bytes() == (_FINISHED/'model.safetensors').read_bytes()
def _no_model(t, out, err):
    assert not (t/'run'/'model.safetensors').exists() and not (t/'run'/'metrics.json').exists()
    assert not [p for p in (t/'run').iterdir() if 'tmp' in p.name], list((t/'run').iterdir())  # no leftovers
def _boom(exc):
    def f(*a, **k): raise exc
    return f

def _model_copy(t, change):
    "A copy of the tiny base model in {t}/m, changed by `change(folder)`."
    from ift_nb.base import base_model_path
    shutil.copytree(base_model_path(), t/'m'); change(t/'m')
def _nan(d):
    w = load_file(str(d/'model.safetensors')); w['model.norm.weight'][0] = float('nan')
    from safetensors.torch import save_file
    save_file(w, str(d/'model.safetensors'), metadata={'format': 'pt'})
def _more_layers(d):
    c = json.loads((d/'config.json').read_text()); c['num_hidden_layers'] += 1; (d/'config.json').write_text(json.dumps(c))
def _eval_model(change, words):
    return Case(['eval', '--model', '{t}/m', '--data', 'embedded:sentiment:zh', '--labels', '正面,负面'], 2, words, light=False, prepare=lambda t, mp: _model_copy(t, change))

def _table_files(t):
    "The same two rows (the second without an answer) as a parquet file, a save_to_disk folder and a local data set folder."
    import datasets, pyarrow as pa, pyarrow.parquet as pq
    rows = [dict(instruction='判断情感', input='好吃', output='正面'), dict(instruction='判断情感', input='难吃', output='')]
    pq.write_table(pa.Table.from_pylist(rows), t/'d.parquet')
    datasets.Dataset.from_list(rows).save_to_disk(str(t/'disk'))
    (t/'hfset').mkdir(); (t/'hfset'/'train.jsonl').write_text(''.join(json.dumps(r, ensure_ascii=False) + '\n' for r in rows), encoding='utf-8')

CASES = {
    # arguments of every command: range-checked before any work, the option or field named
    'eval --batch-size -1': _eval('--labels', '正面,负面', '--batch-size', '-1', words=['argument --batch-size: must be at least 1, got -1']),
    'eval --batch-size 0': _eval('--batch-size', '0', words=['argument --batch-size: must be at least 1, got 0']),
    'predict --batch-size -1': _eval('--batch-size', '-1', cmd='predict', words=['argument --batch-size', 'at least 1']),
    'predict --max-new-tokens 0': _eval('--max-new-tokens', '0', cmd='predict', words=['argument --max-new-tokens', 'at least 1']),
    'eval --limit 0': _eval('--limit', '0', words=['argument --limit', 'at least 1']),
    'eval --labels one label': _eval('--labels', '正面', words=['argument --labels', 'at least 2 labels']),
    'eval --labels twice': _eval('--labels', '正面,正面', words=['argument --labels', 'given twice']),
    'eval --model empty': Case(['eval', '--model', '', '--data', 'embedded:sentiment:zh'], 2, ['argument --model', 'non-empty']),
    'check --max-length 0': Case(['check', '{t}/d.jsonl', '--max-length', '0'], 2, ['argument --max-length'], {'d.jsonl': ROWS}),
    'check --labels one label': Case(['check', '{t}/d.jsonl', '--labels', '正面'], 2, ['argument --labels'], {'d.jsonl': ROWS}),
    'bench --steps 0': _bench('--steps', '0', words=['argument --steps', 'at least 1']),
    'bench --n-eval 0': _bench('--n-eval', '0', words=['argument --n-eval']),
    'bench --batch-size -4': _bench('--batch-size', '-4', words=['argument --batch-size']),
    'bench --lr inf': _bench('--lr', 'inf', words=['argument --lr', 'finite']),
    'bench --lr nan': _bench('--lr', 'nan', words=['argument --lr', 'finite']),
    'bench --seed -1': _bench('--seed', '-1', words=['argument --seed']),
    'bench --device cuda:99': _bench('--device', 'cuda:99', words=['argument --device', 'cuda:99']),
    'bench unknown system': _bench('--systems', 'ift_nb fast', words=["unknown system(s) ['ift_nb fast']"]),
    'pretrain --steps 0': Case(['pretrain', '--steps', '0'], 2, ['argument --steps']),
    'pretrain --vocab-size 10': Case(['pretrain', '--vocab-size', '10'], 2, ['argument --vocab-size', 'at least 260']),
    'pretrain --block-size 1': Case(['pretrain', '--block-size', '1'], 2, ['argument --block-size']),
    # config values: the field and the file named
    **{f'{key}: {value}': _field(key, value, says, extra) for key, value, says, extra in [  # (field, bad value, what follows the field's name, more config)
        ('epochs', 0, 'must be greater than 0', 'max_steps: -1\n'), ('epochs', -1, '', 'max_steps: -1\n'),
        ('grad_accum', 0, 'must be at least 1', ''), ('lr', '.inf', 'must be a finite number', ''), ('lr', '.nan', 'must be a finite number', ''),
        ('lr', -0.001, 'must be greater than 0', ''), ('batch_size', 0, '', ''), ('max_steps', 0, 'must be -1 or at least 1', ''),
        ('max_length', 0, '', ''), ('warmup', -1, '', ''), ('save_steps', 0, '', ''), ('logging_steps', 0, '', '')]},
    'lora_dropout: 1.5': _field('lora_dropout', 1.5, '', '', 'in [0, 1)'),
    'seed: -1': _field('seed', -1),
    'labels: one': _train('labels: [正面]\n', words=["field 'labels'", 'at least 2 labels']),
    'scheduler: unknown': _train('scheduler: cosin\n', words=["field 'scheduler'", "unknown scheduler 'cosin'"]),
    'optim: unknown': _train('optim: adam\n', words=["field 'optim'", "unknown optimizer 'adam'"]),
    'device: unknown': _train('device: tpu9\n', words=["field 'device'", 'not a device']),
    'template: unknown': _train('template: fr\n', words=["field 'template'", "unknown template 'fr'"]),
    '--set overrides with a bad value': _train('', '--set', 'batch_size=-1', words=["c.yaml (with --set), field 'batch_size'"]),
    '--set without =': _train('', '--set', 'batch_size', words=["--set expects key=value"]),
    **{f'{key}: {value}': _field(key, value, says) for key, value, says in [
        ('task_eval_size', 0, 'must be at least 1'), ('limit_train', 0, 'must be at least 1'), ('limit_eval', -3, 'must be at least 1'),
        ('augment', -1, 'must be at least 0'), ('eval_steps', 0, 'must be at least 1'), ('save_total_limit', 0, 'must be at least 1'), ('weight_decay', -0.1, 'must be at least 0'),
        ('lora_r', 0, 'must be at least 1'), ('lora_alpha', 0, 'must be greater than 0'), ('model', "''", 'expected a non-empty string'),
        ('train', "' '", 'expected a non-empty string')]},
    'demo --epochs 0': Case(['demo', '--epochs', '0'], 2, ['argument --epochs: must be greater than 0']),
    # the run folder tells the truth
    'resume with a changed lr': _train('save_steps: 2\nmax_steps: 4\nlr: 0.1\n', prepare=_with_ckpts, words=['holds a run made with other settings (lr: 0.001 -> 0.1)', 'these may change: epochs'],
                                      then=lambda t, out, err: _assert((t/'run'/'checkpoint-4').is_dir() and 'lr: 0.001' in (t/'run'/'ift_config.yaml').read_text())),
    'resume with a changed logging_steps': _train('save_steps: 2\nmax_steps: 4\nlogging_steps: 3\n', prepare=_with_ckpts, words=['holds a run made with other settings (logging_steps: 1 -> 3)']),  # the Trainer would keep the checkpoint's
    'finished run re-run with a changed lr': _train('save_steps: 2\nmax_steps: 4\nlr: 0.002\n', prepare=_finished, words=['holds a run made with other settings (lr: 0.001 -> 0.002)'], then=_unchanged),
    'finished run re-run with resume: false': _train('save_steps: 2\nmax_steps: 4\nresume: false\n', prepare=_finished, words=['holds a finished run that this one would replace'], then=_unchanged),
    '--overwrite with a bad training file': _train('save_steps: 2\nmax_steps: 4\ntrain: {t}/missing.jsonl\n', '--overwrite', prepare=_finished, light=False, words=['missing.jsonl: no such file'],
                                                   then=lambda t, out, err: _unchanged(t, out, err) or _assert((t/'run'/'checkpoint-4').is_dir())),
    'finished run with its model cut short': _train('save_steps: 2\nmax_steps: 4\n', code=0, light=False, prepare=lambda t, mp: _finished(t, mp) or _cut('model.safetensors')(t/'run'),
                                                    words=['model.safetensors is cut short', 'training it again from its last checkpoint'],
                                                    then=lambda t, out, err: _assert(torch.equal(weights(t/'run')['model.norm.weight'], weights(_FINISHED)['model.norm.weight']))),
    'training answers outside labels': Case(['train', '{t}/c.yaml'], 2, ['1 of 3 training answers are not among the labels', '中性'], {'c.yaml': _over(CFG, 'labels: [正面, 负面]\ntrain: {t}/d.jsonl\n'), 'd.jsonl': ROWS + '{"instruction": "判断情感", "input": "一般", "output": "中性"}\n'}),
    'killed in the final save: the resumed run counts the whole run': _train('save_steps: 2\nmax_steps: 4\n', code=0, light=False, prepare=_with_ckpts, words=['resuming from'],
        then=lambda t, out, err: _assert((lambda m, f: (m['steps'], m['examples_seen'], m['real_tokens']) == (4, 16, f['real_tokens']) and abs(m['train_loss'] - f['train_loss']) < 1e-6)(
            json.loads((t/'run'/'metrics.json').read_text()), json.loads((_FINISHED/'metrics.json').read_text())))),
    'system prompts the template cannot show': Case(['train', '{t}/c.yaml'], 2, ['1 of 3 training records carry a system prompt', "template 'zh' has no place for"],
        {'c.yaml': _over(CFG, 'train: {t}/d.jsonl\n'), 'd.jsonl': ROWS + '{"instruction": "判断情感", "input": "一般", "output": "正面", "system": "你是客服。"}\n'}),
    # inputs are never overwritten
    'bench --output-dir holds its data': Case(['bench', '--data', '{t}/b/train.jsonl', '--output-dir', '{t}/b'], 2, ['the output holds the data file'], {'b/train.jsonl': ROWS},
                                              then=lambda t, out, err: _assert((t/'b'/'train.jsonl').read_text() == ROWS)),
    'predict --out is its --data': Case(['predict', '--model', 'base', '--data', '{t}/d.jsonl', '--out', '{t}/d.jsonl'], 2, ['the output is the --data file'], {'d.jsonl': ROWS}, then=lambda t, out, err: _assert((t/'d.jsonl').read_text() == ROWS)),
    # loaded weights are checked, model folders named
    'eval a model with NaN weights': _eval_model(lambda d: _nan(d), ['1 weights tensor(s) hold NaN or infinite values']),
    'eval a config with a layer the weights lack': _eval_model(lambda d: _more_layers(d), ['its weights lack 9 tensor(s) that its config.json needs']),
    'eval a model cut short': _eval_model(lambda d: _cut('model.safetensors')(d), ['model.safetensors is cut short (1,000 bytes']),
    'eval an empty model folder': _eval_model(lambda d: [f.unlink() for f in d.iterdir()], ['holds no config.json: not a model folder']),
    'eval a missing model folder': Case(['eval', '--model', '{t}/nowhere/model', '--data', 'embedded:sentiment:zh'], 2, ['nowhere/model: no such model folder'], light=False),
    'train a one-word model name found nowhere': Case(['train', '--model', 'nosuchmodel', '--train', 'embedded:sentiment:zh', '--output-dir', '{t}/run'], 2,
                                                      ['nosuchmodel: no such local folder, and the hub could not provide'], light=False,
                                                      then=lambda t, out, err: _assert('Retrying' not in err)),  # no minute of hub retries where it cannot be reached
    'check --tokenizer a folder without one': Case(['check', '{t}/d.jsonl', '--tokenizer', '{t}/m'], 2, ['holds no tokenizer files'], {'d.jsonl': ROWS},
                                                   prepare=lambda t, mp: _model_copy(t, lambda d: [f.unlink() for f in d.glob('tokenizer*')])),
    # rows
    'CSV with a NUL byte': Case(['check', '{t}/d.csv'], 2, ['d.csv, line 3', 'a NUL byte'], {'d.csv': 'instruction,output\na,正面\nb\x00,负面\n'}),
    'CSV with an unclosed quote': Case(['check', '{t}/d.csv'], 2, ['d.csv, line 3', 'a quote opened in this row is never closed'], {'d.csv': 'instruction,output\na,正面\n"b,负面\nc,正面\n'}),
    'check --lenient with no usable row': Case(['check', '{t}/d.jsonl', '--lenient'], 2, ['none of the 2 rows is usable'], {'d.jsonl': '{"x": 1}\n{"y": 2}\n'}),
    'parquet with an empty answer': Case(['check', '{t}/d.parquet'], 2, ["d.parquet, row 2, field 'output': empty answer"], prepare=lambda t, mp: _table_files(t)),
    'save_to_disk folder with an empty answer': Case(['check', '{t}/disk'], 2, ["disk, row 2, field 'output': empty answer"], prepare=lambda t, mp: _table_files(t)),
    'hf: local set with an empty answer': Case(['check', 'hf:{t}/hfset'], 2, ["hf:", "hfset, split train, index 1, field 'output': empty answer"], prepare=lambda t, mp: _table_files(t)),
    'hf: a set that is not there': Case(['check', 'hf:{t}/nowhere'], 2, ['nowhere: datasets.load_dataset could not load']),
    'parquet that is not parquet': Case(['check', '{t}/d.parquet'], 2, ['d.parquet: not a readable parquet file'], {'d.parquet': 'instruction,output\n'}),
    'config report_to an integration not installed': _field('report_to', 'wandb', "not installed: ['wandb']"),
    'config columns with an unknown field': _field('columns', '{{outptu: label}}', "unknown field 'outptu' in columns"),
    'config columns not a mapping': _field('columns', 'input', 'expected a mapping of strings'),
    'config label_map not a mapping': _field('label_map', '[a, b]', 'expected a mapping of strings'),
    'chat --temperature 0': Case(['chat', '--model', 'base', '--temperature', '0'], 2, ['argument --temperature: must be greater than 0']),
    'chat --top-p 1.5': Case(['chat', '--model', 'base', '--top-p', '1.5'], 2, ['argument --top-p: must be in (0, 1]']),
    'chat --system with a template that has no place for it': Case(['chat', '--model', 'base', '--system', '你是助手'], 2, ["template 'zh' has no place for a system prompt"]),
    'eval decoding options with label scoring': _eval('--labels', '正面,负面', '--repetition-penalty', '1.2', words=['decoding options (--repetition-penalty) apply to generation']),
    'predict --no-repeat-ngram-size -1': _eval('--no-repeat-ngram-size', '-1', cmd='predict', words=['argument --no-repeat-ngram-size: must be at least 0']),
    'export a folder that is not a finished run': Case(['export', '{t}/d', '--out', '{t}/x'], 2, ['not a finished run (no metrics.json)'], {'d/x.txt': 'x'}),
    'export into the run itself': Case(['export', '{t}/run', '--out', '{t}/run'], 2, ['run folder'], prepare=_finished, then=_unchanged),
    'config is a list': Case(['train', '{t}/c.yaml'], 2, ['expected a mapping of config keys'], {'c.yaml': '- model: base\n'}),
    'config with an alias bomb': Case(['train', '{t}/c.yaml'], 2, ['c.yaml, line 2: invalid YAML: aliases (*a) are not allowed'], {'c.yaml': 'a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nlabels: [*b, *b, *b, *b]\n'}),
    'config key given twice': Case(['train', '{t}/c.yaml'], 2, ["c.yaml, line 8: invalid YAML: key 'lr' given twice"], {'c.yaml': CFG + 'lr: 0.1\nlr: 0.2\n'}),
    'config not UTF-8': Case(['train', '{t}/c.yaml'], 2, ['c.yaml: not UTF-8 text'], prepare=lambda t, mp: (t/'c.yaml').write_bytes('model: café\n'.encode('latin-1'))),
    'config file empty': Case(['train', '{t}/c.yaml'], 2, ['c.yaml: the config file is empty'], {'c.yaml': '# nothing set\n'}),
    'output_dir: a list': _field('output_dir', '[runs, x]', "expected str, got ['runs', 'x']"),
    'lr and learning_rate': _train('lr: 0.1\nlearning_rate: 0.2\n', words=["field 'lr': given twice, as 'lr' and as 'learning_rate'"]),
    'train option out of range, no config': Case(['train', '--lr', '0', '--output-dir', '{t}/run'], 2, ["argument --lr: must be greater than 0, got 0.0"]),
    'train option not a number': _train('', '--batch-size', 'many', words=["ift_nb train: error: argument --batch-size/--per-device-train-batch-size: invalid int value: 'many'"]),
    'learning_rate: 1e-4 trains': _train('learning_rate: 1e-4\n', code=0, light=False, words=['model saved'],
                                         then=lambda t, out, err: _assert('lr: 0.0001' in (t/'run'/'ift_config.yaml').read_text())),
    'train from options alone': Case(['train', '--model', 'base', '--train', 'embedded:sentiment:zh', '--max-steps', '2', '--per-device-train-batch-size', '4', '--lora', 'true',
                                      '--output-dir', '{t}/run'], 0, ['model saved'], light=False,
                                     then=lambda t, out, err: _assert('lora: true' in (t/'run'/'ift_config.yaml').read_text() and 'batch_size: 4' in (t/'run'/'ift_config.yaml').read_text())),
    # rows after loading
    'JSON nested too deeply': Case(['check', '{t}/d.jsonl'], 2, ['line 2', 'nested too deeply'], {'d.jsonl': DEEP}),
    'eval rows without answers': Case(['eval', '--model', 'base', '--data', '{t}/d.jsonl'], 2, ['line 1', "field 'output'", 'missing field'], {'d.jsonl': UNLABELED}),
    # results: nothing reported unless it is one
    'eval --labels outside the references': _eval('--labels', 'positive,negative', words=['130 of 130 reference answers are not among the labels', '正面']),
    'train eval answers outside labels': _train("eval: embedded:sentiment:en\nlabels: [正面, 负面]\n", words=['reference answers are not among the labels', 'positive']),
    'weights become non-finite': _train('optim: sgd\nlr: 1e30\nweight_decay: 1e30\nscheduler: constant\nwarmup: 0\nmax_steps: 1\n', light=False,
                                        words=['non-finite weights at step 1', 'the final model was not written'], then=_no_model),
    'max_steps mid-epoch counts trained batches': _train('', code=0, light=False, words=[], then=lambda t, out, err: _counted(t)),
    # output folders
    'output folder not writable': Case(['train', '{t}/c.yaml'], 2, ['output folder cannot be written'], {'c.yaml': CFG.replace('{t}/run', '{t}/file/run'), 'file': 'x'}),
    'output folder in use': _train('', prepare=lambda t, mp: _hold(t, mp), words=['another run is writing into this folder', f'PID {os.getpid()}']),
    'finished run re-run': _train('save_steps: 2\nmax_steps: 4\n', code=0, light=False, prepare=_finished, words=['already complete'], then=_unchanged),
    '--overwrite whose training fails': _train('optim: sgd\nlr: 1e30\nweight_decay: 1e30\nscheduler: constant\nwarmup: 0\nmax_steps: 1\n', '--overwrite', light=False, prepare=_finished,
                                               words=['non-finite weights at step 1'], then=lambda t, out, err: _unchanged(t, out, err) or _assert((t/'run'/'checkpoint-4').is_dir() and not (t/'run'/'.previous-run').exists())),
    'finished run --overwrite': _train('save_steps: 2\nmax_steps: 4\n', '--overwrite', code=0, light=False, prepare=_finished, words=[],
                                      then=lambda t, out, err: _assert('model saved' in out and 'already complete' not in out and (t/'run'/'metrics.json').read_bytes() != (_FINISHED/'metrics.json').read_bytes()
                                                                     and not (t/'run'/'.previous-run').exists())),
    'resume: false over checkpoints': _train('save_steps: 2\nmax_steps: 4\nresume: false\n', prepare=_with_ckpts, words=['holds checkpoints of an earlier run', 'checkpoint-4'],
                                            then=lambda t, out, err: _assert((t/'run'/'checkpoint-4').is_dir())),
    'last checkpoint cut short': _train('save_steps: 2\nmax_steps: 4\n', code=0, light=False, prepare=lambda t, mp: _with_ckpts(t, mp, None) or _cut('model.safetensors')(t/'run'/'checkpoint-4'),
                                       words=['skipping checkpoint-4', 'model.safetensors is cut short', 'resuming from checkpoint-2'], then=lambda t, out, err: _resumed(t, 2)),
    'last optimizer state cut short': _train('save_steps: 2\nmax_steps: 4\n', code=0, light=False, prepare=lambda t, mp: _with_ckpts(t, mp, None) or _cut('optimizer.pt')(t/'run'/'checkpoint-4'),
                                            words=['skipping checkpoint-4', 'optimizer.pt is cut short'], then=lambda t, out, err: _resumed(t, 2)),
    'predict --out into a missing folder': _eval('--out', '{t}/nowhere/p.jsonl', cmd='predict', words=['does not exist']),
    'eval --out is a folder': _eval('--labels', '正面,负面', '--out', '{t}', words=['is a folder']),
    # faults while working: one line, exit 1, nothing half-written
    'disk full at the final save': _train('', code=1, light=False, words=['No space left on device', 'failed: OSError', 'raised at'],
                                          prepare=lambda t, mp: mp.setattr('transformers.PreTrainedModel.save_pretrained', _boom(OSError(errno.ENOSPC, 'No space left on device'))),
                                          then=_no_model),
    'unexpected error': _eval(cmd='predict', code=1, light=False, words=['ift_nb predict: failed: RuntimeError: boom (raised at', '--debug shows the traceback'],
                              prepare=lambda t, mp: mp.setattr('ift_nb.cli.generate', _boom(RuntimeError('boom')))),
    'unexpected error --debug': Case(['--debug', 'predict', '--model', 'base', '--data', 'embedded:sentiment:zh', '--limit', '2'], 1, ['Traceback', 'RuntimeError: boom'], light=False,
                                     prepare=lambda t, mp: mp.setattr('ift_nb.cli.generate', _boom(RuntimeError('boom'))), then=lambda t, out, err: None),
    'Ctrl-C': _eval(cmd='predict', code=130, light=False, words=['ift_nb predict: interrupted'], prepare=lambda t, mp: mp.setattr('ift_nb.cli.load_base', _boom(KeyboardInterrupt()))),
    # predict on real inputs
    'predict rows without answers': Case(['predict', '--model', 'base', '--data', '{t}/d.jsonl', '--labels', '正面,负面', '--lenient'], 0, ['skipped lines: 4'],
                                         {'d.jsonl': UNLABELED}, light=False, then=lambda t, out, err: _assert([json.loads(l)['line'] for l in out.splitlines()] == [1, 3])),
    'predict --out with skipped rows': Case(['predict', '--model', 'base', '--data', '{t}/d.jsonl', '--lenient', '--max-new-tokens', '2', '--out', '{t}/p.jsonl'], 0,
                                            ['skipped lines: 4', 'wrote 2 predictions'], {'d.jsonl': UNLABELED}, light=False,
                                            then=lambda t, out, err: _assert(out == '' and [json.loads(l)['line'] for l in (t/'p.jsonl').read_text().splitlines()] == [1, 3])),
}

def _assert(ok): assert ok
_HELD = []  # locks a case holds, released when it ends
def _hold(t, mp):
    from ift_nb.checks import OutputLock
    (t/'run').mkdir(); _HELD.append(OutputLock(t/'run').__enter__())
def _counted(t):
    m = json.loads((t/'run'/'metrics.json').read_text())
    assert (m['steps'], m['examples_seen']) == (2, 8), m  # 2 steps of 4: the batch made ahead is not counted
    assert m['real_tokens'] <= m['tokens_seen'], m
def _resumed(t, step):
    m = json.loads((t/'run'/'metrics.json').read_text())
    assert m['resumed_from'].endswith(f'checkpoint-{step}') and m['steps'] == 4, m
    assert (t/'run'/'skipped-checkpoint-4').is_dir()  # the damaged checkpoint is kept aside, not deleted

_FINISHED = None

@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
    "A finished run of the table's config with checkpoints at steps 2 and 4 (save_steps: 2, max_steps: 4)."
    global _FINISHED
    t = tmp_path_factory.mktemp('finished')
    (t/'c.yaml').write_text(_over(CFG.format(t=t), 'save_steps: 2\nmax_steps: 4\n'), encoding='utf-8')
    rc, out, err = _main('train', t/'c.yaml')
    assert rc == 0, err[-2000:]
    _FINISHED = t/'run'
    return _FINISHED

def test_table_covers_every_command_and_ruled_field():
    "Every command has a failing case, and every config field with a rule has a case that breaks it (by its field or option name)."
    from ift_nb.cli import parser
    from ift_nb.train import TrainConfig
    from ift_nb.checks import rules_of
    cmds = set(next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices)
    failing = [c for c in CASES.values() if c.code == 2]
    test_cmds = {next(x for x in c.argv if not x.startswith('-')) for c in failing}
    assert cmds <= test_cmds, f"commands without a bad-input case: {sorted(cmds - test_cmds)}"
    said = lambda name: any(f"field '{name}'" in w or f"argument --{name.replace('_', '-')}" in w for c in failing for w in c.words)
    assert not [n for n in rules_of(TrainConfig) if not said(n)], [n for n in rules_of(TrainConfig) if not said(n)]

@pytest.mark.parametrize('name', list(CASES))
def test_bad_input_or_fault(name, tmp_path, monkeypatch, finished_run):
    c, t = CASES[name], tmp_path
    for f, text in c.files.items(): (t/f.format(t=t)).parent.mkdir(parents=True, exist_ok=True); (t/f.format(t=t)).write_text(text.format(t=t) if f.endswith('.yaml') else text, encoding='utf-8')
    if c.light:  # must stop before any model is loaded or any training runs
        import ift_nb.cli, ift_nb.train, ift_nb.bench
        for target in ('ift_nb.cli.load_base', 'ift_nb.cli.base_model_path', 'ift_nb.train.load_model', 'ift_nb.bench.prepare_bench'):
            monkeypatch.setattr(target, _boom(AssertionError(f'{target} ran: the check came too late')))
    if c.prepare: c.prepare(t, monkeypatch)
    try: rc, out, err = _main(*[a.format(t=t) for a in c.argv])
    finally:
        while _HELD: _HELD.pop().__exit__(None, None, None)
    assert rc == c.code, (rc, out[-1000:], err[-3000:])
    for w in c.words: assert w in (err if rc else out + err), (w, out[-1000:], err[-3000:])  # a failure speaks on stderr
    if rc and name != 'unexpected error --debug':
        last = [l for l in err.splitlines() if l.strip()][-1]
        assert last.startswith(f"ift_nb {c.argv[0]}: ") and 'Traceback' not in err, err[-3000:]  # one line, no traceback
    if c.then: c.then(t, out, err)
    elif rc and (t/'run').exists(): assert not (t/'run'/'model.safetensors').exists()

def test_bench_imports_nothing_from_the_working_directory(tmp_path):
    "A folder named ift_nb in the directory `ift_nb bench` starts from is not imported by the processes it starts."
    marker = tmp_path/'pwned'
    (tmp_path/'ift_nb').mkdir()
    (tmp_path/'ift_nb'/'__init__.py').write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path/'ift_nb'/'bench.py').write_text(f"open({str(marker)!r}, 'w').close()\ndef _child(*a): pass\n")
    r = subprocess.run(['ift_nb', 'bench', '--data', 'embedded:sentiment:zh', '--n-eval', '8', '--steps', '1', '--batch-size', '4', '--max-length', '128',
                        '--systems', 'ift_nb padded', '--output-dir', str(tmp_path/'b')], cwd=tmp_path, capture_output=True, text=True, env={**os.environ, **QUIET}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not marker.exists(), 'a planted ift_nb package was imported'
    assert json.loads((tmp_path/'b'/'results.json').read_text())['systems']['ift_nb padded']['examples_seen'] == 4  # 1 step of 4
    subprocess.run([sys.executable, '-c', 'import ift_nb'], cwd=tmp_path)
    assert marker.exists()  # what plain `python -c` does there: the test can see the difference

def test_second_run_into_a_busy_folder_stops(tmp_path):
    "Two real processes, one output folder: the second stops at once, naming the first; killing the first frees the folder."
    cfg = write_cfg(tmp_path/'c.yaml', output_dir=str(tmp_path/'run'), max_steps=5000)
    p = subprocess.Popen(['ift_nb', 'train', str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **QUIET})
    try:
        lock = tmp_path/'run'/'.ift_nb.lock'
        t0 = time.time()
        while time.time() - t0 < 120 and not (lock.exists() and f'PID {p.pid}' in lock.read_text()): time.sleep(0.1)
        r = ift_nb('train', str(cfg))
        assert r.returncode == 2 and f'PID {p.pid}' in r.stderr and 'another run is writing into this folder' in r.stderr, r.stderr[-2000:]
        assert len(r.stderr.strip().splitlines()) == 1 and 'Traceback' not in r.stderr
    finally: p.kill(); p.wait()
    from ift_nb.checks import OutputLock
    with OutputLock(tmp_path/'run'): pass  # SIGKILL left no stale lock
