from bapo_exp.cli import main

main()
