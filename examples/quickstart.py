"""The public API in ten lines: attack the shipped adversarially trained MNIST model and evaluate it.

    python examples/quickstart.py
"""
import robustlab as rl

x, y = rl.data.load("mnist", split="test", n=500)            # float32 [0, 1] NCHW, int64
model = rl.models.load("mnist-cnn-at")                        # nn.Module in eval mode
threat = rl.LpBall("linf", 0.3)

res = rl.attacks.PGD(threat, steps=40, restarts=1, seed=0)(model, x, y)
print(f"PGD-40 success rate {res.success_rate:.3f}, "
      f"{res.forward_calls} forward / {res.backward_calls} backward passes")

report = rl.evaluate(model, x, y, threat, attacks=[rl.attacks.FGSM(threat), rl.attacks.PGD(threat, steps=40)],
                     batch_size=250, seed=0, store="runs.db")
print(f"clean {report.clean_accuracy:.3f}  robust {report.robust_accuracy:.3f}  run {report.run_id}")
for row in report.attacks:
    print(f"  after {row.name:8s} robust {row.robust_accuracy:.3f} (broke {row.broken} of {row.attacked})")
