"The fast runs' learned-effect check fails when learning is broken: the same run on shuffled labels does not pass it."
import random, pytest
from dataclasses import replace
from ift_nb.base import base_model_path, load_base, shared_data_dir
from ift_nb.data import LABELS, RecordList, drop_overlap, load_shared
from ift_nb.execute import evaluate_classification
from ift_nb.experiments import finetune, cue_reviews

pytestmark = pytest.mark.skipif(shared_data_dir() is None, reason='needs the shared data (../shared/data)')
LABELS_ZH = list(LABELS['sentiment_zh'])
MARGIN = 0.15  # the margin of the augmentation chapter's fast runs

@pytest.fixture(scope='module')
def reviews():
    dev = load_shared('chnsenticorp_dev')
    return cue_reviews(drop_overlap(load_shared('chnsenticorp_train'), dev, verbose=False), n=400), cue_reviews(dev)

def gain(train_recs, dev_recs, out) -> tuple[float, float]:
    "Dev accuracy of the tiny base before and after the augmentation chapter's fast fine-tuning run on `train_recs`."
    before = evaluate_classification(*load_base(base_model_path()), dev_recs, LABELS_ZH, max_length=128)['accuracy']
    finetune(train_recs, base_model_path(), out, labels=LABELS_ZH, max_steps=60, batch_size=16, lr=3e-3, max_length=128)
    return before, evaluate_classification(*load_base(out/'model'), dev_recs, LABELS_ZH, max_length=128)['accuracy']

def check_learned(before, after, margin=MARGIN):
    assert after - before > margin, f"no learned effect: {before:.3f} -> {after:.3f}"

def test_true_labels_pass(reviews, tmp_path):
    check_learned(*gain(*reviews, tmp_path))

def test_shuffled_labels_fail(reviews, tmp_path):
    train, dev = reviews
    labels = [r.output for r in train]; random.Random(0).shuffle(labels)
    before, after = gain(RecordList(replace(r, output=l) for r, l in zip(train, labels)), dev, tmp_path)
    with pytest.raises(AssertionError, match='no learned effect'): check_learned(before, after)
