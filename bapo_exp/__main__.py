from bapo_exp.run.cli import main

main()
