"""The Trainium talks' attention swap, without a Trainium: Hugging Face Qwen3-0.6B (its
published config, random weights, truncated to 4 layers) with eager attention and with
NKI flash attention, predicted on one trn2 and one trn3 NeuronCore.

    python examples/qwen3_attention_swap.py                  # 512 tokens
    python examples/qwen3_attention_swap.py --tokens 16384   # the talk's setting

Needs the `hf` extra (torch, transformers). Prints prompts/s and latency per request for
both attentions and the speedup, like the talk, and the accuracy of the NKI model
against eager attention on the CPU (at --check-tokens, numerics on); writes the NKI
run's model trace and report to --out.
"""
import argparse
import sys

from trnsim.torch import attention_swap as swap


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=512, help="prompt length (multiple of 128)")
    ap.add_argument("--batch", type=int, default=1, help="prompts per forward pass")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--chips", default="trn2,trn3")
    ap.add_argument("--check-tokens", type=int, default=256,
                    help="prompt length of the accuracy check (0: skip it)")
    ap.add_argument("--out", default="trnsim-out/qwen3_attention_swap")
    args = ap.parse_args(argv)

    results = {}
    for chip in args.chips.split(","):
        print(f"{chip}: Qwen3-0.6B, {args.layers} layers, {args.batch} x {args.tokens} tokens",
              file=sys.stderr)
        results[chip] = swap.predict(chip, args.tokens, args.batch, args.layers,
                                     progress=lambda m: print("  " + m, file=sys.stderr))
    acc = swap.accuracy(args.check_tokens, args.layers) if args.check_tokens else None
    print(swap.table(results, acc))
    eager_pps, eager_s = swap.TALK["eager"]
    nki_pps, nki_s = swap.TALK["nki"]
    print(f"the talk (trn2, 16K tokens): eager {eager_pps} prompts/s ({eager_s} s/request), "
          f"NKI {nki_pps} prompts/s ({nki_s} s/request)")
    first = next(iter(results))
    written = results[first]["nki"].profile.save(f"{args.out}/{first}")
    print(f"model trace: {written['trace']}\nmodel report: {written['report']}")


if __name__ == "__main__":
    main()
