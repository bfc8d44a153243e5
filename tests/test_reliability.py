"Reliability, security and multi-process training: each test fails when the promised behaviour breaks."
import json, os, random, re, shutil, signal, subprocess, sys, time
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
    r = ift_nb('train', str(write_cfg(tmp_path/'c.yaml', output_dir=str(tmp_path/'run'), learning_rate=0.1)))
    assert r.returncode == 2 and 'unknown key' in r.stderr and 'learning_rate' in r.stderr and 'Traceback' not in r.stderr
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
    m = re.search(r'non-finite loss \((nan|inf|-inf)\) at step (\d+).*the last good checkpoint is (\S+)', r.stderr)
    assert m, r.stderr[-2000:]
    step, good = int(m.group(2)), Path(m.group(3))
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
