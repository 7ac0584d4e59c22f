"""python -m bapo_exp.analysis <root> --figure frontier --out <dir>"""

from bapo_exp.analysis.cli import main

raise SystemExit(main())
