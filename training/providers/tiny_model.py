"""Build a tiny causal LM (Llama architecture) and its tokenizer locally, from a config: no hub download.

For smoke runs of the hf-lora provider on the CPU (tests, the README's "without OpenAI" path):
`python -m training.providers.tiny_model OUT_DIR [TRAIN.jsonl ...]` writes a model directory that
`abgate finetune launch ... --provider hf-lora --model OUT_DIR` trains in seconds. It learns
nothing useful; a real run points `--model` at a downloaded open-weight model directory.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def _texts(paths: Iterable[Path]) -> list[str]:
    out: list[str] = []
    for p in paths:
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.extend(str(m.get("content") or "") for m in json.loads(line).get("messages", []))
    return out


def build(out: Path, corpus: Iterable[str] = (), *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write a tiny Llama model + word-level tokenizer (with a chat template) to `out`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    texts = [*corpus, "hello world", "the answer is"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIALS, vocab_size=4000))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="<|end|>")
    fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=512, pad_token_id=fast.pad_token_id, bos_token_id=fast.bos_token_id,
                         eos_token_id=fast.eos_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m training.providers.tiny_model OUT_DIR [TRAIN.jsonl ...]", file=sys.stderr)
        return 2
    out = build(Path(args[0]), _texts(Path(a) for a in args[1:]))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
