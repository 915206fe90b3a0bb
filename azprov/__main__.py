from azprov.cli import main

main()
