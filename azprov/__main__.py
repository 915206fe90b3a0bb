from azprov.cli_entry import main

main()
