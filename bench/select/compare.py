#!/usr/bin/python3
"""Cross-zoo table of the configurations behind modeldock's defaults, from two study.py outputs.

Usage: compare.py ZOO1_STUDY.json ZOO2_STUDY.json   (prints a plain-text table; mean weighted tau
/ rel@1 per zoo and the worse of the two). select_defaults.py does the choose-on-one,
report-on-the-other part over whole families.
"""
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from select_defaults import direct, evaluate, label, load, two_stage_fn  # noqa: E402

A = load(sys.argv[1])
B = load(sys.argv[2])
def show(lbl, spec):
    a=evaluate(A,direct(spec)); b=evaluate(B,direct(spec))
    print(f"{lbl:70s} A {a[0]:.3f}/{a[1]:.3f}  B {b[0]:.3f}/{b[1]:.3f}  min {min(a[0],b[0]):.3f}")
for spec in [(['brute_logme_pc32','brute_shrinkage_hscore_pc32'],'rank'),(['brute_logme_pc32','brute_shrinkage_hscore_pc32'],'z'),
             (['brute_logme','brute_shrinkage_hscore'],'rank'),(['brute_shrinkage_hscore_pc32'],'rank'),(['brute_logme_pc32'],'rank'),
             (['brute_logme_pc16','brute_shrinkage_hscore_pc16'],'rank'),(['brute_logme_pc64','brute_shrinkage_hscore_pc64'],'rank'),
             (['brute_knn'],'rank'),(['brute_gbc'],'rank'),(['brute_leep'],'rank'),(['brute_nce'],'rank'),(['brute_logme'],'rank'),(['brute_shrinkage_hscore'],'rank'),(['brute_hscore'],'rank')]:
    show(label(spec),spec)
print()
for sp in ['ref','pix']:
  for k in (1,5):
    for d in (16,32):
      spec=([f'proxy_{sp}_k{k}_d{d}_logme',f'proxy_{sp}_k{k}_d{d}_shrinkage_hscore'],'rank'); show(label(spec),spec)
for p in ['proxy_ref_k1_d0_leep','proxy_ref_k1_d0_knn','proxy_ref_k1_d32_knn','proxy_ref_k1_d0_logme','proxy_ref_k1_d0_shrinkage_hscore']:
    show(p,([p],'rank'))
print()
for s1 in [(['proxy_ref_k5_d32_logme','proxy_ref_k5_d32_shrinkage_hscore'],'rank'),(['proxy_pix_k5_d32_logme','proxy_pix_k5_d32_shrinkage_hscore'],'rank'),(['proxy_ref_k1_d32_logme','proxy_ref_k1_d32_shrinkage_hscore'],'rank')]:
  for fr in (0.25,0.5):
    a=evaluate(A,two_stage_fn(s1,(['brute_logme_pc32','brute_shrinkage_hscore_pc32'],'rank'),fr)); b=evaluate(B,two_stage_fn(s1,(['brute_logme_pc32','brute_shrinkage_hscore_pc32'],'rank'),fr))
    print(f"two-stage {fr} {label(s1):50s} A {a[0]:.3f}/{a[1]:.3f} B {b[0]:.3f}/{b[1]:.3f}")
# robust choice among 2-member rank fusions of brute metrics
brute=sorted(m for m in A['scores'] if m.startswith('brute_'))
import itertools
best=[]
for r in (1,2):
  for c in itertools.combinations(brute,r):
    spec=(list(c),'rank'); a=evaluate(A,direct(spec))[0]; b=evaluate(B,direct(spec))[0]; best.append((min(a,b),a,b,label(spec)))
best.sort(reverse=True)
print("robust (max of min over zoos), 1-2 member rank fusions:")
for x in best[:8]: print(f"  {x[3]:60s} A {x[1]:.3f} B {x[2]:.3f}")
