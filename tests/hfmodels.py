"""Tiny multilingual models built from local files, offline, random-init, loaded through open_clip's
real loading path: a Hugging Face text tower (XLM-RoBERTa shape) with a BPE ``tokenizer.json``, and
an open_clip text transformer with a SentencePiece tokenizer (SigLIP's shape)."""

from __future__ import annotations

import json
from pathlib import Path

SENTENCES = [
    "a red circle", "two blue stars on a white background", "a dog on a beach at sunset", "a cat sleeping on a sofa",
    "一个红色的圆形", "两颗蓝色的星星", "海滩上的一只狗", "日落时的城市天际线", "一只在沙发上睡觉的猫",
    "красный круг", "две синие звезды", "собака на пляже", "ein roter Kreis", "zwei blaue Sterne",
    "un cercle rouge", "deux étoiles bleues", "赤い丸", "빨간 원", "دائرة حمراء", "mountains in the snow",
    "a bicycle against a wall", "fireworks over the harbour", "一辆紫色的汽车", "一朵粉红色的花", "grüner Baum",
]


def _corpus(repeat: int = 20):
    for _ in range(repeat):
        yield from SENTENCES


def build_hf_text_model(folder: Path) -> Path:
    """An XLM-RoBERTa-shaped text tower (2 layers, width 32) and a byte-level BPE tokenizer with
    XLM-R's special tokens (<s> ... </s>, <pad> = 1), saved as a transformers model folder."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]"), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    folder.mkdir(parents=True, exist_ok=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", cls_token="<s>", sep_token="</s>")
    fast.save_pretrained(str(folder))
    config = XLMRobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=64, max_position_embeddings=40,
                              pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1)
    config.save_pretrained(str(folder))
    return folder


def build_sentencepiece_tokenizer(folder: Path) -> Path:
    """A SentencePiece tokenizer in SigLIP's form (transformers' ``SiglipTokenizer``: lower-cased,
    punctuation removed, the pieces, then ``</s>``; pad 0, </s> 1, unk 2), which has no fast
    (``tokenizer.json``) form: the path searchlib serves with sentencepiece directly."""
    import io

    import sentencepiece as spm
    from transformers import SiglipTokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(list(_corpus(40))), model_writer=model, vocab_size=128,
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
                                   model_type="unigram", minloglevel=2)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(model.getvalue())
    SiglipTokenizer(str(folder / "spiece.model"), pad_token="<pad>", model_max_length=24).save_pretrained(str(folder))
    return folder


TINY_VISION = {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8}


def write_configs(folder: Path, hf_dir: Path, sp_dir: Path) -> Path:
    """open_clip configs for both test models (their names mark them multilingual for searchlib)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "searchlib-multilingual-test-hf.json").write_text(json.dumps({
        "embed_dim": 32, "vision_cfg": TINY_VISION,
        "text_cfg": {"hf_model_name": str(hf_dir), "hf_tokenizer_name": str(hf_dir), "hf_proj_type": "linear",
                     "hf_pooler_type": "mean_pooler", "context_length": 24},
    }))
    (folder / "searchlib-multilingual-test-sp.json").write_text(json.dumps({
        "embed_dim": 32, "vision_cfg": TINY_VISION,
        "text_cfg": {"context_length": 24, "vocab_size": 128, "hf_tokenizer_name": str(sp_dir), "width": 32,
                     "heads": 2, "layers": 2, "tokenizer_kwargs": {"clean": "canonicalize", "use_fast": False},
                     "pool_type": "last", "no_causal_mask": True},
    }))
    return folder
