"""Run a Paddle Lite ``.nb`` file with Lite's Python runtime, clip by clip.

Executed as a script by the Lite toolchain's Python 3.9 (which has paddlelite and
numpy, not vslim), so it imports nothing from vslim and keeps to Python 3.9.
Inputs and outputs travel as ``.npy`` files; a JSON line on stdout says what ran.
"""

import argparse
import json

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nb", required=True)
    parser.add_argument("--input", required=True, help=".npy batch [N, ...]")
    parser.add_argument("--output", required=True, help=".npy for the stacked first output")
    args = parser.parse_args()

    from paddlelite.lite import MobileConfig, create_paddle_predictor

    config = MobileConfig()
    config.set_model_from_file(args.nb)
    predictor = create_paddle_predictor(config)
    clips = np.load(args.input)
    outputs = []
    for i in range(len(clips)):
        predictor.get_input(0).from_numpy(np.ascontiguousarray(clips[i : i + 1]))
        predictor.run()
        outputs.append(np.array(predictor.get_output(0).numpy(), copy=True))
    np.save(args.output, np.concatenate(outputs))
    print(json.dumps({"clips": int(len(clips)), "runtime_version": predictor.get_version()}))


if __name__ == "__main__":
    main()
