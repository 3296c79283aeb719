from abgate.cli.main import main

main()
