import J4

await J4CLI.main()
