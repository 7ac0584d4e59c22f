from bapo_exp.main import main

main()
