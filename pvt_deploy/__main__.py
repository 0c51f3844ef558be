from pvt_deploy.cli import main

main()
